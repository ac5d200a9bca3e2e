"""One COCO dataset JSON for a whole annotated collection, from the per-image SA-1B files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from samkit.engine.collect import ImageItem
from samkit.engine.store import Store, atomic_write_text


def write_coco(
    items: list[ImageItem],
    store: Store,
    path: str | os.PathLike,
    categories: list[dict[str, Any]] | None = None,
) -> int:
    """Merge the finished images of the collection into a COCO instance-segmentation dataset
    (``images``, ``annotations`` with COCO RLE, ``iscrowd`` 0 and ``score`` = predicted IoU,
    ``categories``), written atomically. Image ids are the per-image files' ``image_id``;
    annotation ids run from 1. Returns the number of images included."""
    images: list[dict[str, Any]] = []
    chunks: list[str] = []
    next_id = 1
    for item in items:
        p = store.result_path(item)
        if not p.exists():
            continue
        rec = json.loads(Path(p).read_text())
        images.append(rec["image"] | {"id": rec["image"]["image_id"]})
        for a in rec["annotations"]:
            ann = {
                **a,
                "id": next_id,
                "image_id": rec["image"]["image_id"],
                "category_id": a.get("category_id", 1),
                "iscrowd": 0,
                "score": a["predicted_iou"],
            }
            chunks.append(json.dumps(ann))
            next_id += 1
    cats = categories or [{"id": 1, "name": "object"}]
    text = (
        '{"info": {"description": "samkit annotate"}, '
        f'"images": {json.dumps(images)}, "categories": {json.dumps(cats)}, '
        '"annotations": [' + ", ".join(chunks) + "]}\n"
    )
    atomic_write_text(path, text)
    return len(images)
