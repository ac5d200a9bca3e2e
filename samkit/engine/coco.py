"""One COCO dataset JSON for a whole annotated collection, from the per-image SA-1B files."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from samkit.engine.collect import ImageItem
from samkit.engine.store import Store, atomic_write_text
from samkit.formats import coco_dataset


def write_coco(
    items: list[ImageItem],
    store: Store,
    path: str | os.PathLike,
    categories: list[dict[str, Any]] | None = None,
) -> int:
    """Merge the finished images of the collection into a COCO instance-segmentation dataset
    (``samkit.formats.coco_dataset``), written atomically. Returns the number of images."""

    def documents() -> Iterator[dict[str, Any]]:
        for item in items:
            p = store.result_path(item)
            if p.exists():
                yield json.loads(Path(p).read_text())

    data = coco_dataset(documents(), categories, description="samkit annotate")
    atomic_write_text(path, json.dumps(data) + "\n")
    return len(data["images"])
