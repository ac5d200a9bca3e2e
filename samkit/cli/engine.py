"""`samkit annotate`: the data engine over a whole collection."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from samkit.cli.common import check_output_dir, check_output_file, model_arg


def add_annotate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "annotate",
        help="annotate a whole image collection (resumable; local processes or Ray)",
        description="Annotate every image under IN (a folder, recursively, or a manifest file "
        "with one path per line) into OUT: OUT/<stem>.json per image in the SA-1B layout, "
        "failures in OUT/failed.jsonl. Rerun the same command to resume: finished images are "
        "skipped, failed ones retried. OUT never mixes settings: a rerun with another model or "
        "other options stops with the difference (--force recomputes). Exit code 0 if all "
        "images succeeded, 1 if some failed, 2 for a usage error.",
    )
    p.add_argument("input", metavar="IN", help="folder of images or manifest file of paths")
    p.add_argument("output", metavar="OUT", help="output folder")
    p.add_argument("--engine", choices=["local", "ray"], default="local")
    p.add_argument("--address", help="Ray cluster: auto or ray://HOST:PORT (default: local Ray)")
    p.add_argument("--mode", choices=["everything", "boxes", "personalize"], default="everything")
    model_arg(p)
    p.add_argument("--workers", type=int, help="processes / Ray actors (default: CPU cores)")
    p.add_argument("--coco", metavar="OUT.json", help="also write one COCO dataset JSON")
    p.add_argument(
        "--export",
        action="append",
        default=[],
        choices=("yolo", "masks", "png", "polygons"),
        help="also write OUT/yolo/*.txt, OUT/masks/<name>/ (amg.py layout), OUT/labels/*.png "
        "or OUT/coco_polygons.json; repeatable",
    )
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
    p.add_argument(
        "--force",
        action="store_true",
        help="recompute the results in OUT that were made with another model or other options "
        "(without it, such a rerun stops and names the difference)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_annotate)


def cmd_annotate(args: argparse.Namespace) -> int:
    from samkit.engine import annotate

    check_output_dir(args.output)
    if args.coco is not None:
        check_output_file(args.coco, (".json",), "COCO file")
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
        force=args.force,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        on_start=lambda line: print(f"samkit annotate: {line}", file=sys.stderr),
        exports=args.export,
    )
    print(summary)
    if summary.failures:
        print(f"failures listed in {Path(args.output) / 'failed.jsonl'}", file=sys.stderr)
    return summary.exit_code
