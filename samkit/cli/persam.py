"""`samkit personalize`: PerSAM and PerSAM-F from the command line, one object or several."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from samkit.cli.common import check_output_dir, load_model, model_arg


def add_personalize(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "personalize",
        help="PerSAM: find objects, given by reference images and masks, in new images",
        description="Learn each object from --ref and --ref-mask (nonzero = object; repeat the "
        "pair for more references, with --name to tell objects apart: references sharing a "
        "name are views of one object). One object: writes <name>.png (mask, 255 = object) and "
        "<name>_overlay.png per target. Several objects: <name>.png is an indexed PNG (DAVIS "
        "palette, index k = k-th object, listed in objects.json), each pixel in one object.",
    )
    p.add_argument("targets", nargs="+", metavar="TARGET", help="images to segment")
    p.add_argument("--ref", required=True, action="append", help="reference image (repeatable)")
    p.add_argument(
        "--ref-mask",
        required=True,
        action="append",
        help="mask of the object in the matching --ref (repeatable, one per --ref)",
    )
    p.add_argument(
        "--name",
        action="append",
        help="object name of the matching --ref (repeatable; give none or one per --ref)",
    )
    p.add_argument("-o", "--output", required=True, help="folder for the masks and overlays")
    p.add_argument("--finetune", action="store_true", help="PerSAM-F (fit 2 scale weights)")
    p.add_argument(
        "--fixed",
        action="store_true",
        help="fix the official code's quirks (faithful=False; see docs/persam.md)",
    )
    p.add_argument(
        "--presence-threshold",
        type=float,
        default=None,
        help="below this presence score an object is absent (empty mask); default "
        "samkit.persam.persam.PRESENCE_THRESHOLD",
    )
    p.add_argument(
        "--always",
        action="store_true",
        help="always answer with a mask, as the official scripts do (no presence threshold)",
    )
    model_arg(p)
    p.set_defaults(func=cmd_personalize)


def cmd_personalize(args: argparse.Namespace) -> int:
    from samkit.errors import ConfigError
    from samkit.image_io import check_pixels, load_image
    from samkit.masks import overlay, save_mask_png
    from samkit.persam.multi import MultiPerSAM
    from samkit.persam.persam import PRESENCE_THRESHOLD
    from samkit.persam.video_io import save_indexed_png

    if len(args.ref) != len(args.ref_mask):
        raise ConfigError(
            f"give one --ref-mask per --ref: got {len(args.ref)} --ref and "
            f"{len(args.ref_mask)} --ref-mask"
        )
    names = args.name or ["object"] * len(args.ref)
    if len(names) != len(args.ref):
        raise ConfigError(f"give no --name or one per --ref: got {len(names)} for {len(args.ref)}")
    # Every input and the output folder, before the model loads: a bad target must not stop
    # the run half-way with partial output.
    for ref, mask in zip(args.ref, args.ref_mask):
        check_pixels(ref)
        check_pixels(mask, what="mask")
    for target in args.targets:
        check_pixels(target)
    check_output_dir(args.output)
    threshold = args.presence_threshold
    if args.always:
        threshold = None
    elif threshold is None:
        threshold = PRESENCE_THRESHOLD
    multi = MultiPerSAM(
        load_model(args),
        finetune=args.finetune,
        faithful=not args.fixed,
        presence_threshold=threshold,
    ).fit(zip(args.ref, args.ref_mask, names))
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    several = len(multi.names) > 1
    if several:
        index = {str(k): n for k, n in enumerate(multi.names, 1)}
        (out / "objects.json").write_text(json.dumps(index, indent=1) + "\n")
    for target, res in zip(args.targets, multi.segment_many(args.targets)):
        stem = Path(target).stem
        masks = list(res.masks)
        if several:
            save_indexed_png(res.labels, out / f"{stem}.png")
            pic = overlay(load_image(target), masks)
        else:
            one = res.objects[0]
            save_mask_png(masks[0], out / f"{stem}.png")
            pic = overlay(load_image(target), masks, points=one.points, labels=one.labels)
        pic.save(out / f"{stem}_overlay.png")
        parts = []
        for name, obj, m in zip(multi.names, res.objects, masks):
            what = f"{int(m.sum())} pixels" if obj.present else "absent"
            label = f"{name} " if several else ""
            parts.append(f"{label}score {obj.score:.3f}, presence {obj.presence:.2f}, {what}")
        print(f"{target}: {'; '.join(parts)} -> {out / stem}.png")
    return 0


def add_persam_evals(kinds: argparse._SubParsersAction) -> None:
    """`samkit eval perseg` and `samkit eval davis` (the PerSAM paper's evaluations)."""
    p = kinds.add_parser(
        "perseg",
        help="PerSeg: PerSAM's mIoU and mAcc (per-class cumulative, reference 00 skipped), bIoU",
        description="PRED_DIR/<class>/<NN>.png against GT_DIR/<class>/<NN>.png; see "
        "samkit/eval/perseg.py and docs/persam.md.",
    )
    p.add_argument("pred_dir", metavar="PRED_DIR")
    p.add_argument("gt_dir", metavar="GT_DIR")
    p.add_argument("--ref-idx", default="00", help="the reference image's name, skipped")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval_perseg)
    d = kinds.add_parser(
        "davis",
        help="DAVIS 2017 semi-supervised J, F (bound_th 0.008) and J&F, frames 1..T-2",
        description="PRED_DIR/<seq>/<frame>.png against GT_DIR/<seq>/<frame>.png (indexed "
        "PNGs; or one sequence's folders); see samkit/eval/davis.py and docs/persam.md.",
    )
    d.add_argument("pred_dir", metavar="PRED_DIR")
    d.add_argument("gt_dir", metavar="GT_DIR")
    d.add_argument("--json", action="store_true", help="print one JSON object")
    d.set_defaults(func=cmd_eval_davis)


def cmd_eval_perseg(args: argparse.Namespace) -> int:
    from samkit.eval.perseg import evaluate_perseg

    res = evaluate_perseg(args.pred_dir, args.gt_dir, ref_idx=args.ref_idx)
    if args.json:
        print(json.dumps({k: res[k] for k in ("mIoU", "mAcc", "bIoU")}))
        return 0
    for name, c in res["classes"].items():
        print(f"{name:<28} IoU {100 * c['IoU']:6.2f}  bIoU {100 * c['bIoU']:6.2f}  ({c['images']})")
    print(f"mIoU {res['mIoU']:.2f}  mAcc {res['mAcc']:.2f}  bIoU {res['bIoU']:.2f}")
    return 0


def cmd_eval_davis(args: argparse.Namespace) -> int:
    from samkit.eval.davis import evaluate_davis

    res = evaluate_davis(args.pred_dir, args.gt_dir)
    if args.json:
        print(json.dumps({k: res[k] for k in ("J", "F", "JF")}))
        return 0
    for name, s in res["sequences"].items():
        j = " ".join(f"{100 * v:.1f}" for v in s["J"])
        f = " ".join(f"{100 * v:.1f}" for v in s["F"])
        print(f"{name:<24} J {j}  F {f}")
    print(f"J&F {res['JF']:.2f}  J {res['J']:.2f}  F {res['F']:.2f}")
    return 0
