"""`samkit models` (the zoo), `samkit export-onnx` and `samkit demo`."""

from __future__ import annotations

import argparse
from pathlib import Path

from samkit.cli.common import load_model, model_arg


def add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the model zoo and what is cached",
        description="List zoo models: size, whether bundled or cached, source.",
    )
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from samkit.zoo import WEIGHTS_DIR, ZOO, cache_dir

    print(f"{'name':<16} {'size':>9}  {'status':<10} description")
    for e in ZOO.values():
        if e.url is None:
            p = WEIGHTS_DIR / e.filename
            status = "bundled" if p.exists() else "missing"
            size = p.stat().st_size if p.exists() else 0
        else:
            p = cache_dir() / e.filename
            status = "cached" if p.exists() else "download"
            size = e.bytes or 0
        print(f"{e.name:<16} {size / 1e6:>7.1f}MB  {status:<10} {e.description}")
    print(f"\ncache: {cache_dir()} (set SAMKIT_HOME to move it)")
    return 0


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the demo on the bundled model and sample images",
        description="Segment sample images from a click and a box (and everything "
        "mode), write overlay PNGs and print where they are.",
    )
    p.add_argument("-o", "--output", default="demo-out", help="folder for the pictures")
    model_arg(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from samkit.demo import run_demo

    run_demo(Path(args.output), args.model)
    return 0


def add_export_onnx(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-onnx",
        help="export the image encoder and the prompt decoder to ONNX",
        description="Write encoder.onnx and decoder.onnx into a folder. The decoder has the "
        "official SamOnnxModel signature (inputs image_embeddings, point_coords, point_labels, "
        "mask_input, has_mask_input, orig_im_size; outputs masks, iou_predictions, "
        "low_res_masks), so the official web demo and tools built for it load it; HQ-SAM "
        "decoders take sam-hq's (interm_embeddings as well). "
        "samkit.export.onnx.OnnxPredictor runs the folder with onnxruntime.",
    )
    p.add_argument("-o", "--output", default="onnx", help="output folder")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument(
        "--return-single-mask",
        action="store_true",
        help="one mask out, chosen as the official export does (SAM only)",
    )
    p.add_argument(
        "--preprocess",
        action="store_true",
        help="the encoder takes an H x W x 3 RGB image (input_image) and resizes, normalises "
        "and pads it in the graph",
    )
    p.add_argument(
        "--hq-token-only", action="store_true", help="HQ-SAM: the HQ mask alone (sam-hq's option)"
    )
    p.add_argument(
        "--multimask-output",
        action="store_true",
        help="HQ-SAM: add the best of SAM's 3 masks instead of the single-mask token",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="also write encoder.int8.onnx and decoder.int8.onnx (onnxruntime dynamic "
        "quantization) and print their speed and mask agreement against fp32",
    )
    p.add_argument(
        "--bench-images",
        nargs="*",
        default=None,
        metavar="IMG",
        help="images for the --int8 comparison (default: the demo's sample images)",
    )
    model_arg(p, precision="fp32")
    p.set_defaults(func=cmd_export_onnx)


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from samkit.cli.common import check_output_dir
    from samkit.export.onnx import export_onnx, quantize_int8

    check_output_dir(args.output)
    enc, dec = export_onnx(
        load_model(args),
        args.output,
        opset=args.opset,
        return_single_mask=args.return_single_mask,
        preprocess=args.preprocess,
        hq_token_only=args.hq_token_only,
        multimask_output=args.multimask_output,
    )
    print(f"wrote {enc} and {dec}")
    if args.int8:
        from samkit.export.benchmark import compare_int8

        for path in (enc, dec):
            q = quantize_int8(path, path.with_suffix(".int8.onnx"))
            print(f"wrote {q}")
        if args.bench_images:
            images = list(args.bench_images)
        else:
            from samkit.demo import sample_images

            images = [image for _, image, _ in sample_images()]
        report = compare_int8(args.output, images, threads=args.threads)
        print(f"int8 vs fp32 on {len(images)} images (onnxruntime, CPU):")
        print("\n".join(report.lines()))
    return 0
