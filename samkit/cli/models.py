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
        description="Write encoder.onnx and decoder.onnx (prompts as inputs) into a folder; "
        "samkit.export.onnx.OnnxPredictor runs them with onnxruntime.",
    )
    p.add_argument("-o", "--output", default="onnx", help="output folder")
    p.add_argument("--opset", type=int, default=17)
    model_arg(p, precision="fp32")
    p.set_defaults(func=cmd_export_onnx)


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from samkit.export.onnx import export_onnx

    enc, dec = export_onnx(load_model(args), args.output, opset=args.opset)
    print(f"wrote {enc} and {dec}")
    return 0
