"""The SAM paper's zero-shot tasks: `samkit edges`, `samkit proposals`, `samkit instances`, and
their evaluations `samkit eval edges|proposals|coco` (added to the `eval` group)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from samkit.cli.common import check_output_dir, check_output_file, load_model, model_arg


def _images(source: str) -> list[tuple[Path, str, str]]:
    """(path, file name relative to the folder, output stem) of an image or a folder's images."""
    from samkit.engine.collect import collect
    from samkit.errors import ConfigError

    src = Path(source)
    if src.is_dir():
        return [(Path(it.path), it.file_name, it.name) for it in collect(src)]
    if not src.is_file():
        raise ConfigError(f"{src} is neither an image nor a folder of images")
    return [(src, src.name, src.stem)]


# -- samkit edges -----------------------------------------------------------------------------


def add_edges(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "edges",
        help="zero-shot edge detection (SAM paper D.2): an 8-bit edge-strength PNG",
        description="Prompt with a 16x16 point grid (768 masks, no filters), drop redundant "
        "masks by box NMS, Sobel-filter each mask's probability map on its boundary, take the "
        "maximum over masks, normalise and thin with edge NMS. IMG gives one PNG (-o FILE); a "
        "folder gives one PNG per image in the folder -o DIR, named by the image's stem (what "
        "`samkit eval edges` reads).",
    )
    p.add_argument("image", metavar="IMG|DIR", help="image file or folder of images")
    p.add_argument("-o", "--output", required=True, help="edge PNG (or folder, for a folder)")
    p.add_argument("--overlay", help="also write the image with its edges drawn (file or folder)")
    p.add_argument("--points-per-side", type=int, default=16, help="prompt grid (default 16)")
    p.add_argument(
        "--box-nms-thresh", type=float, default=0.7, help="mask NMS box IoU (default 0.7; 1 = off)"
    )
    p.add_argument("--points-per-batch", type=int, default=64, help="points decoded at once")
    p.add_argument("--no-edge-nms", action="store_true", help="skip the edge thinning")
    model_arg(p)
    p.set_defaults(func=cmd_edges)


def cmd_edges(args: argparse.Namespace) -> int:
    from PIL import Image

    from samkit.automatic.edges import detect_edges, overlay_edges
    from samkit.image_io import IMAGE_SUFFIXES, check_aspect_ratio, load_image

    images = _images(args.image)
    many = Path(args.image).is_dir()
    over = Path(args.overlay) if args.overlay else None
    if many:
        out = check_output_dir(args.output)
        out.mkdir(parents=True, exist_ok=True)
        if over is not None:
            check_output_dir(over).mkdir(parents=True, exist_ok=True)
    else:
        out = check_output_file(args.output, (".png",), "edge map (a lossless PNG)")
        if over is not None:
            check_output_file(over, IMAGE_SUFFIXES, "overlay")
    model = load_model(args)
    for path, _, stem in images:
        img = load_image(path)
        check_aspect_ratio(img.shape[:2], model.image_size)
        e = detect_edges(
            model,
            img,
            points_per_side=args.points_per_side,
            box_nms_thresh=args.box_nms_thresh,
            points_per_batch=args.points_per_batch,
            edge_nms=not args.no_edge_nms,
        )
        target = out / f"{stem}.png" if many else out
        Image.fromarray(e.to_uint8()).save(target)
        msg = f"{path}: {e.n_masks} masks, {e.n_kept} after NMS -> {target}"
        if over is not None:
            o = over / f"{stem}.png" if many else over
            overlay_edges(img, e.strength).save(o)
            msg += f", {o}"
        print(msg)
    return 0


# -- samkit proposals -------------------------------------------------------------------------


def add_proposals(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "proposals",
        help="zero-shot object proposals (SAM paper D.3): a COCO results list",
        description="The generator with the paper's proposal settings (64x64 grid, no crops, "
        "no IoU/stability filter, NMS 0.9); masks scored by the mean of predicted IoU and "
        "stability, the best --top-k kept. Writes one COCO results list for IMG or every image "
        "of DIR (image ids from --coco, else samkit's id of the file name).",
    )
    p.add_argument("image", metavar="IMG|DIR", help="image file or folder of images")
    p.add_argument("-o", "--output", required=True, help="COCO results JSON to write")
    p.add_argument(
        "--coco",
        metavar="GT.json",
        help="take image ids from this COCO/LVIS file (matched by file_name or the name in "
        "coco_url); images it does not list are skipped",
    )
    p.add_argument("--top-k", type=int, default=1000, help="proposals kept per image (1000)")
    p.add_argument("--points-per-side", type=int, default=64, help="prompt grid (default 64)")
    p.add_argument("--points-per-batch", type=int, default=64, help="points decoded at once")
    p.add_argument("--overlay", help="single image: also draw the best --overlay-top proposals")
    p.add_argument("--overlay-top", type=int, default=30, help="proposals drawn (default 30)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    model_arg(p)
    p.set_defaults(func=cmd_proposals)


def _coco_names(path: str) -> dict[str, int]:
    """A COCO/LVIS file's images: name -> id, by file_name and by the name in coco_url."""
    from samkit.eval.coco import read_json

    out: dict[str, int] = {}
    for im in read_json(path, "ground truth").get("images", []):
        for key in ("file_name", "coco_url"):
            if im.get(key):
                name = im[key] if key == "file_name" else im[key].rsplit("/", 1)[-1]
                out.setdefault(name, im["id"])
    return out


def _match_id(names: dict[str, int], file_name: str) -> int | None:
    return names.get(file_name, names.get(Path(file_name).name))


def cmd_proposals(args: argparse.Namespace) -> int:
    from samkit.automatic.proposals import check_top_k, generate_proposals
    from samkit.errors import ConfigError
    from samkit.formats import coco_results, image_id_for
    from samkit.image_io import IMAGE_SUFFIXES, check_aspect_ratio, load_image
    from samkit.masks import overlay_annotations

    check_output_file(args.output, (".json",), "proposals")
    if args.overlay:
        check_output_file(args.overlay, IMAGE_SUFFIXES, "overlay")
    images = _images(args.image)
    names = _coco_names(args.coco) if args.coco else None
    todo = []
    for path, rel, _ in images:
        iid = image_id_for(rel) if names is None else _match_id(names, rel)
        if iid is not None:
            todo.append((path, iid))
    if not todo:
        raise ConfigError(f"none of the {len(images)} images is listed in {args.coco}")
    if args.overlay and len(todo) > 1:
        raise ConfigError(f"--overlay draws one image, but {len(todo)} are to be processed")
    check_top_k(args.top_k)
    if len(todo) < len(images):
        print(f"{len(images) - len(todo)} images not in {args.coco}: skipped", file=sys.stderr)
    model = load_model(args)
    results: list[dict[str, Any]] = []
    for path, iid in todo:
        img = load_image(path)
        check_aspect_ratio(img.shape[:2], model.image_size)
        props = generate_proposals(
            model,
            img,
            top_k=args.top_k,
            points_per_side=args.points_per_side,
            points_per_batch=args.points_per_batch,
            progress=not args.no_progress,
        )
        rows = coco_results(props, iid)
        for row, a in zip(rows, props):
            row["score"] = a["score"]
        results += rows
        print(f"{path}: {len(props)} proposals (image id {iid})")
        if args.overlay:
            overlay_annotations(img, props[: args.overlay_top]).save(args.overlay)
            print(f"overlay of the best {min(args.overlay_top, len(props))}: {args.overlay}")
    Path(args.output).write_text(json.dumps(results))
    print(f"{len(results)} proposals -> {args.output}")
    return 0


# -- samkit instances -------------------------------------------------------------------------


def add_instances(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "instances",
        help="zero-shot instance segmentation (SAM paper D.4): one mask per detector box",
        description="Prompt with each detection box, then once more with the box and the most "
        "confident mask's logits (the paper's protocol; the data engine's boxes mode). "
        "DETS.json: a COCO results list of boxes (image_id, bbox XYWH, score, category_id; "
        "needs --coco for the file names) or a COCO dataset of detections (images + "
        "annotations). Writes a COCO results list of masks, scored by the detection score.",
    )
    p.add_argument("detections", metavar="DETS.json", help="detector boxes")
    p.add_argument("--images", required=True, help="folder the file names are relative to")
    p.add_argument("--coco", metavar="GT.json", help="image file names for a results list")
    p.add_argument("-o", "--output", required=True, help="COCO results JSON to write")
    p.add_argument("--min-score", type=float, default=0.0, help="drop boxes scored below this")
    p.add_argument(
        "--overlay", help="also write each image with its boxes and masks to this folder"
    )
    model_arg(p)
    p.set_defaults(func=cmd_instances)


def _detections(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(images with id and file_name, detections) of DETS.json (+ --coco for a results list)."""
    from samkit.errors import ConfigError
    from samkit.eval.coco import read_json

    data = read_json(args.detections, "detections")
    if isinstance(data, list):
        if not args.coco:
            raise ConfigError(
                f"{args.detections} is a COCO results list (image ids only); give --coco GT.json "
                "so the image files can be found"
            )
        images, dets = read_json(args.coco, "ground truth").get("images", []), data
    elif isinstance(data, dict) and "annotations" in data:
        images, dets = data.get("images", []), data["annotations"]
    else:
        raise ConfigError(
            f"{args.detections} is neither a COCO results list nor a COCO dataset of detections"
        )
    for im in images:
        if not im.get("file_name") and im.get("coco_url"):
            im["file_name"] = im["coco_url"].rsplit("/", 1)[-1]
    return images, dets


def cmd_instances(args: argparse.Namespace) -> int:
    from PIL import ImageDraw

    from samkit.engine.modes import Boxes
    from samkit.errors import ConfigError
    from samkit.formats import coco_results
    from samkit.image_io import check_aspect_ratio, load_image
    from samkit.masks import overlay_annotations

    check_output_file(args.output, (".json",), "masks")
    images, dets = _detections(args)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for d in dets:
        if d.get("score") is None or d["score"] >= args.min_score:
            by_image.setdefault(d["image_id"], []).append(d)
    files = {im["id"]: Path(args.images) / im["file_name"] for im in images}
    missing = [i for i in by_image if i not in files or not files[i].is_file()]
    if missing:
        raise ConfigError(
            f"{len(missing)} images with detections are not found under {args.images} (e.g. "
            f"image id {missing[0]}: {files.get(missing[0], 'not in the images list')})"
        )
    if args.overlay:
        check_output_dir(args.overlay).mkdir(parents=True, exist_ok=True)
    boxes = Boxes(load_model(args))
    results: list[dict[str, Any]] = []
    for iid, prompts in by_image.items():
        img = load_image(files[iid])
        check_aspect_ratio(img.shape[:2], boxes.predictor.model.image_size)
        recs = boxes(img, prompts)
        rows = coco_results(recs, iid)
        for row, r in zip(rows, recs):
            if r.get("detection_score") is not None:
                row["score"] = float(r["detection_score"])
        results += rows
        if args.overlay:
            pic = overlay_annotations(img, recs)
            draw = ImageDraw.Draw(pic)
            for r in recs:
                x, y, w, h = r["prompt_box"]
                draw.rectangle([x, y, x + w, y + h], outline=(255, 255, 0), width=3)
            pic.save(Path(args.overlay) / f"{files[iid].stem}.png")
        print(f"{files[iid]}: {len(recs)} masks")
    Path(args.output).write_text(json.dumps(results))
    print(f"{len(results)} masks on {len(by_image)} images -> {args.output}")
    return 0


# -- samkit eval edges | proposals | coco -----------------------------------------------------


def add_eval_kinds(kinds: argparse._SubParsersAction) -> None:
    """The zero-shot evaluations, under `samkit eval`."""
    e = kinds.add_parser(
        "edges",
        help="BSDS500 protocol: ODS, OIS, AP, R50 of edge PNGs against ground truth",
        description="Match PRED_DIR/<stem>.png (8-bit edge strength) to each ground truth in "
        "GT_DIR (BSDS500 .mat with every annotator, or a boundary PNG) at 0.0075 of the "
        "diagonal, over 99 thresholds (pyEdgeEval's correspondence matching).",
    )
    e.add_argument("pred_dir", metavar="PRED_DIR")
    e.add_argument("gt_dir", metavar="GT_DIR")
    e.add_argument("--thresholds", type=int, default=99, help="thresholds (default 99)")
    e.add_argument("--max-dist", type=float, default=0.0075, help="tolerance, x diagonal")
    e.add_argument("--workers", type=int, default=1, help="processes matching images")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.set_defaults(func=cmd_eval_edges)
    p = kinds.add_parser(
        "proposals",
        help="class-agnostic mask AR@1000 (and small/medium/large) of object proposals",
        description="pycocotools COCOeval, segm, useCats=0, maxDets 10/100/1000.",
    )
    p.add_argument("gt", metavar="GT.json", help="COCO/LVIS instance annotations")
    p.add_argument("proposals", metavar="PROPS.json", help="COCO results list")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval_proposals)
    c = kinds.add_parser(
        "coco",
        help="COCO mask AP, AP50, AP75, APs/m/l of instance segmentation results",
        description="pycocotools COCOeval with the standard parameters.",
    )
    c.add_argument("gt", metavar="GT.json", help="COCO instance annotations")
    c.add_argument("results", metavar="DT.json", help="COCO results list")
    c.add_argument("--iou-type", choices=("segm", "bbox"), default="segm")
    c.add_argument("--json", action="store_true", help="print one JSON object")
    c.set_defaults(func=cmd_eval_coco)


def _report(metrics: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(metrics))
    else:
        print(
            "  ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
            )
        )
    return 0


def cmd_eval_edges(args: argparse.Namespace) -> int:
    from samkit.eval.edges import evaluate_edges

    res = evaluate_edges(
        args.pred_dir,
        args.gt_dir,
        n_thresholds=args.thresholds,
        max_dist=args.max_dist,
        workers=args.workers,
        progress=not args.json,
    )
    return _report(res.summary(), args.json)


def cmd_eval_proposals(args: argparse.Namespace) -> int:
    from samkit.eval.coco import evaluate_proposals

    return _report(evaluate_proposals(args.gt, args.proposals), args.json)


def cmd_eval_coco(args: argparse.Namespace) -> int:
    from samkit.eval.coco import evaluate_instances

    return _report(evaluate_instances(args.gt, args.results, args.iou_type), args.json)
