"""`samkit segment` (one object from clicks and a box) and `samkit everything` (every object)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from samkit.cli.common import (
    check_output_dir,
    check_output_file,
    load_model,
    model_arg,
    parse_box,
    parse_point,
)


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
        type=parse_point,
        default=[],
        metavar="X,Y[,LABEL]",
        help="a click in pixels; LABEL 1 = object (default), 0 = background; repeatable",
    )
    p.add_argument("--box", type=parse_box, metavar="X0,Y0,X1,Y1", help="a box around the object")
    p.add_argument("-o", "--output", default="mask.png", help="mask PNG to write (.png)")
    p.add_argument("--overlay", help="also write the image with the mask drawn on it")
    p.add_argument(
        "--single",
        action="store_true",
        help="ask for one mask instead of picking the best of three",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    model_arg(p)
    p.set_defaults(func=cmd_segment)


def cmd_segment(args: argparse.Namespace) -> int:
    import numpy as np

    from samkit.errors import PromptError
    from samkit.image_io import IMAGE_SUFFIXES, check_aspect_ratio, load_image
    from samkit.masks import overlay, save_mask_png
    from samkit.predictor import Predictor

    if not args.point and args.box is None:
        raise PromptError("give at least one --point X,Y or a --box X0,Y0,X1,Y1")
    check_output_file(args.output, (".png",), "mask (a lossless PNG)")
    if args.overlay:
        check_output_file(args.overlay, IMAGE_SUFFIXES, "overlay")
    image = load_image(args.image)
    pred = Predictor(load_model(args))
    check_aspect_ratio(image.shape[:2], pred.model.image_size)
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


# What each --format writes: the file suffix it takes, or None for a folder.
OUTPUT_SUFFIXES = {
    "sa1b": ".json",
    "coco": ".json",
    "polygons": ".json",
    "yolo": ".txt",
    "png": ".png",
    "masks": None,
}


def add_everything(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "everything",
        help="segment everything in an image (automatic mask generation)",
        description="Prompt the model with a grid of points and keep every confident, stable, "
        "distinct mask. Writes SA-1B JSON, COCO results (RLE or polygons), YOLO labels, a "
        "label-map PNG or a folder of mask PNGs (--format).",
    )
    p.add_argument("image", help="image file")
    p.add_argument(
        "-o",
        "--output",
        default="anns.json",
        help="file to write (.json; .png for png, .txt for yolo; a folder for masks)",
    )
    p.add_argument(
        "--format",
        choices=tuple(OUTPUT_SUFFIXES),
        default="sa1b",
        help="sa1b: SA-1B json; coco: COCO results list (pycocotools loadRes), RLE masks; "
        "polygons: the same list with COCO polygons; yolo: YOLO segmentation .txt (class 0, "
        "normalised polygons); png: label map (0 = none, i = mask i); masks: a folder of "
        "{i}.png masks and metadata.csv (the official amg.py layout)",
    )
    p.add_argument("--overlay", help="also write the image with all masks drawn on it")
    p.add_argument(
        "--preset", default="default", help="default, sa1b, small_objects, proposals, edges"
    )
    p.add_argument("--points-per-side", type=int, help="grid size (overrides the preset)")
    p.add_argument("--points-per-batch", type=int, help="points decoded at once (memory)")
    p.add_argument(
        "--pred-iou-thresh", type=float, help="keep masks whose predicted IoU is above this"
    )
    p.add_argument(
        "--stability-score-thresh", type=float, help="keep masks at least this stable (0..1)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    model_arg(p)
    p.set_defaults(func=cmd_everything)


def cmd_everything(args: argparse.Namespace) -> int:
    from samkit.automatic import MaskGenerator
    from samkit.formats import (
        coco_results,
        image_id_for,
        label_map,
        sa1b_document,
        save_label_map_png,
        with_polygons,
        write_mask_folder,
        write_yolo,
    )
    from samkit.image_io import IMAGE_SUFFIXES, check_aspect_ratio, load_image
    from samkit.masks import annotation_masks, overlay_annotations

    suffix = OUTPUT_SUFFIXES[args.format]
    if suffix is None:
        check_output_dir(args.output)
    else:
        check_output_file(args.output, (suffix,), f"{args.format} output")
    if args.overlay:
        check_output_file(args.overlay, IMAGE_SUFFIXES, "overlay")
    image = load_image(args.image)
    overrides: dict = {"output_mode": "coco_rle", "progress": not args.no_progress}
    if args.points_per_side is not None:
        overrides["points_per_side"] = args.points_per_side
    for name in ("points_per_batch", "pred_iou_thresh", "stability_score_thresh"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    model = load_model(args)
    check_aspect_ratio(image.shape[:2], model.image_size)
    gen = MaskGenerator.from_preset(model, args.preset, **overrides)
    anns = gen.generate(image)
    h, w = image.shape[:2]
    # The file's name in its folder: the data engine gives it the same image id.
    name = Path(args.image).name
    if args.format == "png":
        save_label_map_png(label_map(annotation_masks(anns), (h, w)), args.output)
    elif args.format == "sa1b":
        Path(args.output).write_text(json.dumps(sa1b_document(anns, name, w, h)))
    elif args.format == "coco":
        Path(args.output).write_text(json.dumps(coco_results(anns, image_id_for(name))))
    elif args.format == "polygons":
        results = coco_results(with_polygons(anns), image_id_for(name))
        Path(args.output).write_text(json.dumps(results))
    elif args.format == "yolo":
        write_yolo(anns, args.output)
    else:
        write_mask_folder(anns, args.output)
    if args.overlay:
        overlay_annotations(image, anns).save(args.overlay)
    print(f"{len(anns)} masks -> {args.output}" + (f", {args.overlay}" if args.overlay else ""))
    if not anns:
        print(no_masks_hint(gen), file=sys.stderr)
    return 0


def no_masks_hint(gen) -> str:  # type: ignore[no-untyped-def]
    """What to lower when everything mode keeps nothing."""
    iou, stab = gen.pred_iou_thresh, gen.stability_score_thresh
    return (
        f"no mask passed the filters (pred_iou_thresh {iou}, stability_score_thresh {stab}); "
        f"lower them, e.g. --pred-iou-thresh {round(iou * 0.6, 2)} "
        f"--stability-score-thresh {round(stab * 0.8, 2)}, or try --preset proposals"
    )
