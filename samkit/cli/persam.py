"""`samkit personalize`: PerSAM and PerSAM-F from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from samkit.cli.common import check_output_dir, load_model, model_arg


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
    model_arg(p)
    p.set_defaults(func=cmd_personalize)


def cmd_personalize(args: argparse.Namespace) -> int:
    from samkit.image_io import check_pixels, load_image
    from samkit.masks import overlay, save_mask_png
    from samkit.persam.persam import PerSAM

    # Every input and the output folder, before the model loads: a bad target must not stop
    # the run half-way with partial output.
    check_pixels(args.ref)
    check_pixels(args.ref_mask, what="mask")
    for target in args.targets:
        check_pixels(target)
    check_output_dir(args.output)
    per = PerSAM(load_model(args), finetune=args.finetune, faithful=not args.fixed)
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
