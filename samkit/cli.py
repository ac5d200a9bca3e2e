"""`samkit ...` commands. Thin: parse arguments, call the library, print. Errors of our own become
one-line messages and exit code 2; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_MODEL = "samkit-tiny"


def _model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"zoo name (see `samkit models`) or a .pth/.safetensors path "
        f"(default {DEFAULT_MODEL})",
    )


def load_model(name: str):  # type: ignore[no-untyped-def]
    """The CLI's one way to get a model: the zoo/path loader, with a plain message on stderr."""
    import samkit

    return samkit.load(name)


def _point(s: str) -> tuple[float, float, int]:
    parts = s.split(",")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"'{s}' is not X,Y or X,Y,LABEL (e.g. 120,80 or 120,80,0)")
    try:
        x, y = float(parts[0]), float(parts[1])
        label = int(parts[2]) if len(parts) == 3 else 1
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{s}' is not X,Y or X,Y,LABEL with numbers") from None
    return x, y, label


def _box(s: str) -> tuple[float, float, float, float]:
    try:
        vals = [float(v) for v in s.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{s}' is not X0,Y0,X1,Y1 with numbers") from None
    if len(vals) != 4:
        raise argparse.ArgumentTypeError(f"'{s}' is not X0,Y0,X1,Y1 (four numbers)")
    return vals[0], vals[1], vals[2], vals[3]


# -- segment --------------------------------------------------------------------------------


def add_segment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment",
        help="segment one object from clicks and/or a box",
        description="Segment one object in IMG from clicks (--point) and/or a box (--box). "
        "Writes the best mask as a PNG (255 = object).",
    )
    p.add_argument("image", help="image file")
    p.add_argument(
        "--point",
        action="append",
        type=_point,
        default=[],
        metavar="X,Y[,LABEL]",
        help="a click in pixels; LABEL 1 = object (default), 0 = background; repeatable",
    )
    p.add_argument("--box", type=_box, metavar="X0,Y0,X1,Y1", help="a box around the object")
    p.add_argument("-o", "--output", default="mask.png", help="mask PNG to write")
    p.add_argument("--overlay", help="also write the image with the mask drawn on it")
    p.add_argument(
        "--single",
        action="store_true",
        help="ask for one mask instead of picking the best of three",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _model_arg(p)
    p.set_defaults(func=cmd_segment)


def cmd_segment(args: argparse.Namespace) -> int:
    import numpy as np

    from samkit.errors import PromptError
    from samkit.image_io import load_image
    from samkit.masks import overlay, save_mask_png
    from samkit.predictor import Predictor

    if not args.point and args.box is None:
        raise PromptError("give at least one --point X,Y or a --box X0,Y0,X1,Y1")
    image = load_image(args.image)
    pred = Predictor(load_model(args.model))
    pred.set_image(image)
    pts = np.array([p[:2] for p in args.point]) if args.point else None
    lbl = np.array([p[2] for p in args.point]) if args.point else None
    res = pred.predict(pts, lbl, box=args.box, multimask=not args.single)
    k = int(np.argmax(res.scores))
    mask = res.masks[k]
    save_mask_png(mask, args.output)
    if args.overlay:
        overlay(image, [mask], points=pts, labels=lbl, box=args.box).save(args.overlay)
    info = {
        "mask": str(args.output),
        "score": float(res.scores[k]),
        "area": int(mask.sum()),
        "scores": [float(s) for s in res.scores],
        "overlay": args.overlay,
    }
    if args.json:
        print(json.dumps(info))
    else:
        print(f"wrote {args.output} (area {info['area']} px, predicted IoU {info['score']:.3f})")
        if args.overlay:
            print(f"wrote {args.overlay}")
    return 0


# -- models ---------------------------------------------------------------------------------


def add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the model zoo and what is cached",
        description="List zoo models: size, whether bundled or cached, source.",
    )
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from samkit.checkpoints import WEIGHTS_DIR, ZOO, cache_dir

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


# -- demo -----------------------------------------------------------------------------------


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the demo on the bundled model and sample images",
        description="Segment sample images from a click and a box (and everything "
        "mode), write overlay PNGs and print where they are.",
    )
    p.add_argument("-o", "--output", default="demo-out", help="folder for the pictures")
    _model_arg(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from samkit.demo import run_demo

    run_demo(Path(args.output), args.model)
    return 0


# -- personalize ----------------------------------------------------------------------------


def add_personalize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "personalize",
        help="PerSAM: find one object, given by a reference image and mask, in new images",
        description="Learn the object from --ref and --ref-mask (nonzero = object), then write "
        "<name>.png (mask, 255 = object) and <name>_overlay.png for each target image.",
    )
    p.add_argument("targets", nargs="+", metavar="TARGET", help="images to segment")
    p.add_argument("--ref", required=True, help="reference image")
    p.add_argument("--ref-mask", required=True, help="mask of the object in the reference image")
    p.add_argument("-o", "--output", required=True, help="folder for the masks and overlays")
    p.add_argument("--finetune", action="store_true", help="PerSAM-F (fit 2 scale weights)")
    p.add_argument(
        "--fixed",
        action="store_true",
        help="fix the official code's quirks (faithful=False; see docs/persam.md)",
    )
    _model_arg(p)
    p.set_defaults(func=cmd_personalize)


def cmd_personalize(args: argparse.Namespace) -> int:
    from samkit.image_io import load_image
    from samkit.masks import overlay, save_mask_png
    from samkit.personalize import PerSAM

    per = PerSAM(load_model(args.model), finetune=args.finetune, faithful=not args.fixed)
    per.fit(args.ref, args.ref_mask)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for target, res in zip(args.targets, per.segment_many(args.targets)):
        stem = Path(target).stem
        save_mask_png(res.mask, out / f"{stem}.png")
        pic = overlay(load_image(target), [res.mask], points=res.points, labels=res.labels)
        pic.save(out / f"{stem}_overlay.png")
        print(f"{target}: score {res.score:.3f}, {int(res.mask.sum())} pixels -> {out / stem}.png")
    return 0


def add_train(sub: argparse._SubParsersAction) -> None:
    from samkit.train.run import add_arguments

    p = sub.add_parser(
        "train",
        help="train or fine-tune SAM (SAM recipe, interactive prompt simulation, resumable)",
        description="Train SAM on synthetic scenes, an image+mask folder (also PerSeg layout) or "
        "a COCO json. Example: samkit train --data DIR --init samkit-tiny --freeze image_encoder",
    )
    add_arguments(p)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from samkit.train.run import run

    return run(args)


def add_eval(sub: argparse._SubParsersAction) -> None:
    from samkit.eval.run import add_arguments

    p = sub.add_parser("eval", help="evaluate a model (eval prompts DATA: 1-click, box, N-click)")
    kinds = p.add_subparsers(dest="eval_kind", required=True)
    q = kinds.add_parser(
        "prompts",
        help="click protocol of the SAM paper and box prompts on a folder, COCO json or "
        "'synthetic' held-out scenes",
    )
    add_arguments(q)
    _model_arg(q)
    q.set_defaults(func=cmd_eval)
    from samkit.eval.hq import add_arguments as add_hq_arguments

    h = kinds.add_parser(
        "hq",
        help="HQ-SAM protocol: mIoU and boundary mIoU with ground-truth boxes, single mask, "
        "on an HQSeg-44K folder or 'synthetic-thin' held-out scenes (--base to compare)",
    )
    add_hq_arguments(h)
    _model_arg(h)
    h.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    if args.eval_kind == "hq":
        from samkit.eval.hq import run as run_hq

        return run_hq(args, load_model(args.model))
    from samkit.eval.run import run

    return run(args, load_model(args.model))


# -- serve ----------------------------------------------------------------------------------


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="web app and HTTP API for interactive segmentation",
        description="Serve the web page (/) and the HTTP API (/docs, /openapi.json): upload "
        "images, click to segment, everything mode, personalization, export.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--data-dir",
        help="folder for uploaded images, kept across restarts (default: a new temporary folder)",
    )
    p.add_argument(
        "--cache-mb", type=float, default=512, help="embedding cache limit in MiB (default 512)"
    )
    p.add_argument(
        "--max-upload-mb", type=float, default=20, help="largest request body in MiB (default 20)"
    )
    _model_arg(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from samkit.server import serve

    serve(
        args.model,
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        cache_bytes=int(args.cache_mb * 2**20),
        max_upload_bytes=int(args.max_upload_mb * 2**20),
    )
    return 0


# -- annotate -------------------------------------------------------------------------------


def add_annotate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "annotate",
        help="annotate a whole image collection (resumable; local processes or Ray)",
        description="Annotate every image under IN (a folder, recursively, or a manifest file "
        "with one path per line) into OUT: OUT/<stem>.json per image in the SA-1B layout, "
        "failures in OUT/failed.jsonl. Rerun the same command to resume: finished images are "
        "skipped, failed ones retried. Exit code 0 if all images succeeded, 1 if some failed.",
    )
    p.add_argument("input", metavar="IN", help="folder of images or manifest file of paths")
    p.add_argument("output", metavar="OUT", help="output folder")
    p.add_argument("--engine", choices=["local", "ray"], default="local")
    p.add_argument("--address", help="Ray cluster: auto or ray://HOST:PORT (default: local Ray)")
    p.add_argument("--mode", choices=["everything", "boxes", "personalize"], default="everything")
    _model_arg(p)
    p.add_argument("--workers", type=int, help="processes / Ray actors (default: CPU cores)")
    p.add_argument("--coco", metavar="OUT.json", help="also write one COCO dataset JSON")
    p.add_argument("--detections", metavar="COCO.json", help="boxes mode: COCO detections")
    p.add_argument("--ref", help="personalize mode: the reference image")
    p.add_argument("--ref-mask", help="personalize mode: the reference mask (nonzero = object)")
    p.add_argument("--finetune", action="store_true", help="personalize mode: PerSAM-F")
    g = p.add_argument_group("everything mode (MaskGenerator options)")
    g.add_argument("--preset", help="sa1b, small_objects, proposals, edges, default")
    g.add_argument("--points-per-side", type=int)
    g.add_argument("--points-per-batch", type=int)
    g.add_argument("--pred-iou-thresh", type=float)
    g.add_argument("--stability-score-thresh", type=float)
    g.add_argument("--crop-n-layers", type=int)
    g.add_argument("--min-mask-region-area", type=int)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_annotate)


def cmd_annotate(args: argparse.Namespace) -> int:
    from samkit.engine import annotate

    names = ["preset", "points_per_side", "points_per_batch", "pred_iou_thresh"]
    names += ["stability_score_thresh", "crop_n_layers", "min_mask_region_area"]
    options = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    summary = annotate(
        args.input,
        args.output,
        mode=args.mode,
        model=args.model,
        engine=args.engine,
        workers=args.workers,
        address=args.address,
        options=options,
        detections=args.detections,
        ref_image=args.ref,
        ref_mask=args.ref_mask,
        finetune=args.finetune,
        coco=args.coco,
        progress=False if args.no_progress else None,
    )
    print(summary)
    if summary.failures:
        print(f"failures listed in {Path(args.output) / 'failed.jsonl'}", file=sys.stderr)
    return summary.exit_code


# -- export-onnx ----------------------------------------------------------------------------


def add_export_onnx(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-onnx",
        help="export the image encoder and the prompt decoder to ONNX",
        description="Write encoder.onnx and decoder.onnx (prompts as inputs) into a folder; "
        "samkit.export.onnx.OnnxPredictor runs them with onnxruntime.",
    )
    p.add_argument("-o", "--output", default="onnx", help="output folder")
    p.add_argument("--opset", type=int, default=17)
    _model_arg(p)
    p.set_defaults(func=cmd_export_onnx)


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from samkit.export.onnx import export_onnx

    enc, dec = export_onnx(load_model(args.model), args.output, opset=args.opset)
    print(f"wrote {enc} and {dec}")
    return 0


# -- train-hq -------------------------------------------------------------------------------


def add_train_hq(sub: argparse._SubParsersAction) -> None:
    from samkit.train.hq_run import add_arguments

    p = sub.add_parser(
        "train-hq",
        help="train an HQ-SAM head on a frozen SAM (thin-structure scenes or HQSeg-44K folders)",
        description="HQ-SAM training: the SAM given by --init stays frozen; only the HQ token, "
        "its MLP and the feature-fusion layers learn (BCE + dice on point samples).",
    )
    add_arguments(p)
    p.set_defaults(func=cmd_train_hq)


def cmd_train_hq(args: argparse.Namespace) -> int:
    from samkit.train.hq_run import run

    return run(args)


# -- everything -----------------------------------------------------------------------------


def add_everything(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "everything",
        help="segment everything in an image (automatic mask generation)",
        description="Prompt the model with a grid of points and keep every confident, stable, "
        "distinct mask. Writes SA-1B JSON (COCO RLE masks), COCO JSON, or a label-map PNG.",
    )
    p.add_argument("image", help="image file")
    p.add_argument("-o", "--output", default="anns.json", help="file to write")
    p.add_argument(
        "--format",
        choices=("sa1b", "coco", "png"),
        default="sa1b",
        help="sa1b: SA-1B json; coco: COCO results json; png: label map (0 = none, i = mask i)",
    )
    p.add_argument("--overlay", help="also write the image with all masks drawn on it")
    p.add_argument(
        "--preset", default="default", help="default, sa1b, small_objects, proposals, edges"
    )
    p.add_argument("--points-per-side", type=int, help="grid size (overrides the preset)")
    p.add_argument("--points-per-batch", type=int, help="points decoded at once (memory)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _model_arg(p)
    p.set_defaults(func=cmd_everything)


def cmd_everything(args: argparse.Namespace) -> int:
    import os

    from samkit.automatic import MaskGenerator
    from samkit.image_io import load_image
    from samkit.masks import annotation_masks, label_map, overlay_annotations, save_label_map_png

    image = load_image(args.image)
    overrides: dict = {"output_mode": "coco_rle", "progress": not args.no_progress}
    if args.points_per_side is not None:
        overrides["points_per_side"] = args.points_per_side
    if args.points_per_batch is not None:
        overrides["points_per_batch"] = args.points_per_batch
    gen = MaskGenerator.from_preset(load_model(args.model), args.preset, **overrides)
    anns = gen.generate(image)
    h, w = image.shape[:2]
    if args.format == "png":
        save_label_map_png(label_map(annotation_masks(anns), (h, w)), args.output)
    else:
        name = os.path.basename(args.image)
        if args.format == "sa1b":
            doc: dict = {
                "image": {"image_id": 0, "width": w, "height": h, "file_name": name},
                "annotations": [{"id": i, **a} for i, a in enumerate(anns)],
            }
        else:
            doc = {
                "images": [{"id": 0, "width": w, "height": h, "file_name": name}],
                "categories": [{"id": 1, "name": "object"}],
                "annotations": [
                    {
                        "id": i,
                        "image_id": 0,
                        "category_id": 1,
                        "segmentation": a["segmentation"],
                        "area": a["area"],
                        "bbox": a["bbox"],
                        "iscrowd": 0,
                        "score": a["predicted_iou"],
                    }
                    for i, a in enumerate(anns)
                ],
            }
        Path(args.output).write_text(json.dumps(doc))
    if args.overlay:
        overlay_annotations(image, anns).save(args.overlay)
    print(f"{len(anns)} masks -> {args.output}" + (f", {args.overlay}" if args.overlay else ""))
    return 0


# -- entry point ----------------------------------------------------------------------------

COMMANDS = [
    add_demo,
    add_segment,
    add_models,
    add_personalize,
    add_train,
    add_eval,
    add_serve,
    add_annotate,
    add_export_onnx,
    add_train_hq,
    add_everything,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samkit", description="Promptable image segmentation (SAM, HQ-SAM, PerSAM)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from samkit.errors import SamkitError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SamkitError as e:
        print(f"samkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
