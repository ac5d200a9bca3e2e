"""Masks out to the formats people use, one home for each: SA-1B records and files, COCO
datasets, COCO results lists, polygons and PNG label maps. The generator, the CLI, the server and
the data engine all write through here.

Conventions: annotation ids run from 1 (COCO's ``loadRes`` numbers results from 1 too); ``bbox``
is XYWH with ``w = x1 - x0`` from the inclusive XYXY box (``samkit.masks.masks_to_boxes``), as the
official SAM writes SA-1B; image ids come from ``image_id_for(file_name)``, so the same file gets
the same id from `samkit everything`, `samkit annotate` and its COCO export.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from samkit.masks import box_xyxy_to_xywh, encode_rle, masks_to_boxes

DEFAULT_CATEGORIES = [{"id": 1, "name": "object", "supercategory": "object"}]


def image_id_for(file_name: str) -> int:
    """A 48-bit integer id from an image's relative path: stable across runs, exact in JSON/JS."""
    return int(hashlib.sha1(file_name.encode()).hexdigest()[:12], 16)


def sa1b_record(
    segmentation: Any,
    area: int,
    box: Sequence[float],
    predicted_iou: float,
    point_coords: Sequence[Sequence[float]],
    stability_score: float | None,
    crop_box: Sequence[float],
) -> dict[str, Any]:
    """The SA-1B annotation layout, defined once: ``box`` and ``crop_box`` come as XYXY and are
    written XYWH."""
    return {
        "segmentation": segmentation,
        "area": area,
        "bbox": box_xyxy_to_xywh(box),
        "predicted_iou": predicted_iou,
        "point_coords": [list(p) for p in point_coords],
        "stability_score": stability_score,
        "crop_box": box_xyxy_to_xywh(crop_box),
    }


def mask_record(
    mask: np.ndarray,
    predicted_iou: float,
    stability_score: float | None = None,
    point_coords: Sequence[Sequence[float]] = (),
) -> dict[str, Any]:
    """One H x W bool mask of a whole image -> its SA-1B annotation (COCO RLE)."""
    h, w = mask.shape
    box = masks_to_boxes(np.asarray(mask, bool)[None])[0].tolist()
    return sa1b_record(
        encode_rle(mask)[0],
        int(np.count_nonzero(mask)),
        box,
        float(predicted_iou),
        [[float(v) for v in p] for p in point_coords],
        None if stability_score is None else float(stability_score),
        [0, 0, w, h],
    )


def sa1b_document(
    anns: Sequence[dict[str, Any]], file_name: str, width: int, height: int
) -> dict[str, Any]:
    """One image's SA-1B file: ``image`` (image_id, width, height, file_name) and its
    ``annotations``, numbered from 1."""
    return {
        "image": {
            "image_id": image_id_for(file_name),
            "width": width,
            "height": height,
            "file_name": file_name,
        },
        "annotations": [{**a, "id": i} for i, a in enumerate(anns, start=1)],
    }


def coco_dataset(
    documents: Iterable[dict[str, Any]],
    categories: list[dict[str, Any]] | None = None,
    description: str = "samkit",
) -> dict[str, Any]:
    """SA-1B documents (see ``sa1b_document``) -> one COCO instance-segmentation dataset:
    ``images``, ``annotations`` (ids from 1, ``category_id`` 1 unless the record has one,
    ``iscrowd`` 0, ``score`` = predicted IoU), ``categories``."""
    images, anns = [], []
    for doc in documents:
        im = doc["image"]
        images.append({**im, "id": im["image_id"]})
        for a in doc["annotations"]:
            anns.append(
                {
                    **a,
                    "id": len(anns) + 1,
                    "image_id": im["image_id"],
                    "category_id": a.get("category_id", 1),
                    "iscrowd": 0,
                    "score": a.get("predicted_iou", a.get("score")),
                }
            )
    return {
        "info": {"description": description},
        "images": images,
        "annotations": anns,
        "categories": categories or DEFAULT_CATEGORIES,
    }


def coco_results(anns: Sequence[dict[str, Any]], image_id: int) -> list[dict[str, Any]]:
    """SA-1B annotations of one image -> a COCO results list (``image_id``, ``category_id``,
    ``segmentation`` as COCO RLE, ``score``, ``bbox``, ``area``), the form pycocotools'
    ``COCO.loadRes`` and ``COCOeval`` take. ``score`` is the predicted IoU."""
    return [
        {
            "image_id": image_id,
            "category_id": a.get("category_id", 1),
            "segmentation": a["segmentation"],
            "score": float(a.get("predicted_iou", a.get("score", 1.0))),
            "bbox": a["bbox"],
            "area": a["area"],
        }
        for a in anns
    ]


def mask_to_polygons(mask: np.ndarray, min_points: int = 3) -> list[list[float]]:
    """bool H x W -> outer contours as COCO polygons ``[x0, y0, x1, y1, ...]`` (pixel centres),
    for labeling tools. Holes are not represented; use RLE where they matter."""
    import cv2

    contours, _ = cv2.findContours(
        np.asarray(mask, dtype=np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= min_points]


def label_map(masks: Sequence[np.ndarray], shape: tuple[int, int] | None = None) -> np.ndarray:
    """Masks (bool H x W each) -> int32 H x W map, 0 = no mask, i + 1 = mask i. Larger masks are
    drawn first, so a small mask inside a large one keeps its pixels."""
    if not len(masks) and shape is None:
        raise ValueError("label_map needs masks or a shape")
    h, w = shape if shape is not None else np.asarray(masks[0]).shape
    out = np.zeros((h, w), dtype=np.int32)
    areas = [int(np.asarray(m).sum()) for m in masks]
    for i in sorted(range(len(masks)), key=lambda k: -areas[k]):
        out[np.asarray(masks[i], dtype=bool)] = i + 1
    return out


def save_label_map_png(labels: np.ndarray, path: str | os.PathLike) -> None:
    """Write a label map as an 8-bit PNG (up to 255 labels) or a 16-bit PNG (up to 65535)."""
    top = int(labels.max()) if labels.size else 0
    if top > 65535:
        raise ValueError(f"{top} labels do not fit a 16-bit PNG (at most 65535)")
    dtype = np.uint8 if top <= 255 else np.uint16
    Image.fromarray(labels.astype(dtype)).save(path)


# -- more outputs from one result: COCO polygons, YOLO segmentation, a folder of mask PNGs ---


def with_polygons(anns: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Annotations with ``segmentation`` as COCO polygons (outer contours, ``mask_to_polygons``)
    instead of RLE or bool arrays; every other field kept. Feed the result to ``coco_results``
    or ``coco_dataset`` for COCO polygon files that labelling tools import."""
    from samkit.masks import annotation_masks

    return [
        {**a, "segmentation": mask_to_polygons(m)} for a, m in zip(anns, annotation_masks(anns))
    ]


def yolo_lines(anns: Sequence[dict[str, Any]], class_id: int = 0) -> list[str]:
    """Annotations -> YOLO segmentation label lines, ``class x1 y1 x2 y2 ...`` with coordinates
    divided by the image width and height (ultralytics' format). YOLO holds one polygon per
    object: the largest outer contour of each mask; masks with no contour are skipped."""
    from samkit.masks import annotation_masks

    lines = []
    for m in annotation_masks(anns):
        h, w = m.shape
        polys = mask_to_polygons(m)
        if not polys:
            continue
        xy = np.asarray(max(polys, key=lambda p: _polygon_area(np.asarray(p))), float)
        xy = xy.reshape(-1, 2) / [w, h]
        lines.append(" ".join([str(class_id), *(f"{v:.6f}" for v in xy.reshape(-1))]))
    return lines


def _polygon_area(flat: np.ndarray) -> float:
    x, y = flat[0::2], flat[1::2]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def write_yolo(anns: Sequence[dict[str, Any]], path: str | os.PathLike, class_id: int = 0) -> None:
    """Write ``yolo_lines`` to a ``.txt`` label file (empty file when there are no masks)."""
    lines = yolo_lines(anns, class_id)
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


AMG_METADATA_HEADER = (
    "id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,"
    "stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h"
)


def write_mask_folder(anns: Sequence[dict[str, Any]], folder: str | os.PathLike) -> None:
    """The official ``scripts/amg.py`` folder layout: ``{i}.png`` per mask (255 = object,
    i from 0) and ``metadata.csv`` with one row per mask under ``AMG_METADATA_HEADER``
    (bbox and crop_box XYWH, the first input point)."""
    from pathlib import Path

    from samkit.masks import annotation_masks, save_mask_png

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rows = [AMG_METADATA_HEADER]
    for i, (a, m) in enumerate(zip(anns, annotation_masks(anns))):
        save_mask_png(m, out / f"{i}.png")
        point = a["point_coords"][0] if a.get("point_coords") else ["", ""]
        row = [
            i,
            a["area"],
            *a["bbox"],
            *point,
            a["predicted_iou"],
            a["stability_score"],
            *a["crop_box"],
        ]
        rows.append(",".join(str(v) for v in row))
    (out / "metadata.csv").write_text("\n".join(rows))
