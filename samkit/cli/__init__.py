"""`samkit ...` commands. Thin: parse arguments, call the library, print. Errors of our own become
one-line messages and exit code 2; anything else is a bug and keeps its traceback.

One module per command group holds all of its argument parsing."""

from __future__ import annotations

import argparse
import sys

from samkit.cli import (
    convert,
    dreambooth,
    engine,
    models,
    persam,
    persam_video,
    segment,
    serve,
    train,
    zero_shot,
)
from samkit.cli import eval as eval_cmd

COMMANDS = [
    models.add_demo,
    segment.add_segment,
    models.add_models,
    persam.add_personalize,
    persam_video.add_personalize_video,
    dreambooth.add_dreambooth_masks,
    train.add_train,
    eval_cmd.add_eval,
    serve.add_serve,
    engine.add_annotate,
    models.add_export_onnx,
    convert.add_convert,
    train.add_train_hq,
    segment.add_everything,
    zero_shot.add_edges,
    zero_shot.add_proposals,
    zero_shot.add_instances,
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

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
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
