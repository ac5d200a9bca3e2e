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
