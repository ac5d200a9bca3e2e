"""One COCO dataset JSON for a whole annotated collection, from the per-image SA-1B files."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from samkit.engine.collect import ImageItem
from samkit.engine.store import Store, atomic_write_text
from samkit.errors import ConfigError
from samkit.formats import coco_dataset


def write_coco(
    items: list[ImageItem],
    store: Store,
    path: str | os.PathLike,
    categories: list[dict[str, Any]] | None = None,
    made_with: dict[str, Any] | None = None,
) -> int:
    """Merge the finished images of the collection into a COCO instance-segmentation dataset
    (``samkit.formats.coco_dataset``), written atomically. With ``made_with`` (the run's
    settings), only results made with them are merged (ConfigError for any other) and the
    settings are recorded under ``info``. Returns the number of images."""

    def documents() -> Iterator[dict[str, Any]]:
        for item in items:
            p = store.result_path(item)
            if not p.exists():
                continue
            doc = json.loads(Path(p).read_text())
            if (
                made_with is not None
                and (doc.get("made_with") or {}).get("key") != made_with["key"]
            ):
                raise ConfigError(
                    f"{p} was made with other settings than this run's; rerun annotate "
                    "with --force to recompute it before exporting"
                )
            yield doc

    data = coco_dataset(documents(), categories, description="samkit annotate")
    if made_with is not None:
        data["info"]["made_with"] = made_with
    atomic_write_text(path, json.dumps(data) + "\n")
    return len(data["images"])
