"""More outputs from a finished collection, through ``samkit.formats``: YOLO segmentation label
files, the official ``amg.py`` mask folders, PNG label maps and a COCO dataset with polygons.
Written from the per-image SA-1B results, so a resumed run exports every finished image."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from samkit.engine.collect import ImageItem
from samkit.engine.store import Store
from samkit.errors import ConfigError

EXPORTS = ("yolo", "masks", "png", "polygons")


def check_exports(names: Sequence[str]) -> list[str]:
    """The export names, checked before any work (ConfigError naming the valid ones)."""
    bad = [n for n in names if n not in EXPORTS]
    if bad:
        raise ConfigError(f"unknown export {', '.join(bad)}; choose from {', '.join(EXPORTS)}")
    return list(dict.fromkeys(names))


def write_exports(
    items: list[ImageItem], store: Store, out: str | Path, names: Sequence[str]
) -> dict[str, Path]:
    """Write each export under ``out`` (yolo/<name>.txt, masks/<name>/, labels/<name>.png,
    coco_polygons.json) for the finished images; returns where each went."""
    from samkit import formats
    from samkit.masks import annotation_masks

    root = Path(out)
    where = {
        "yolo": root / "yolo",
        "masks": root / "masks",
        "png": root / "labels",
        "polygons": root / "coco_polygons.json",
    }
    docs: list[dict[str, Any]] = []
    for item in items:
        path = store.result_path(item)
        if not path.exists():
            continue
        doc = json.loads(path.read_text())
        anns, im = doc["annotations"], doc["image"]
        if "yolo" in names:
            where["yolo"].mkdir(parents=True, exist_ok=True)
            formats.write_yolo(anns, where["yolo"] / f"{item.name}.txt")
        if "masks" in names:
            formats.write_mask_folder(anns, where["masks"] / item.name)
        if "png" in names:
            where["png"].mkdir(parents=True, exist_ok=True)
            labels = formats.label_map(annotation_masks(anns), (im["height"], im["width"]))
            formats.save_label_map_png(labels, where["png"] / f"{item.name}.png")
        if "polygons" in names:
            docs.append({**doc, "annotations": formats.with_polygons(anns)})
    if "polygons" in names:
        data = formats.coco_dataset(docs, description="samkit annotate (polygons)")
        where["polygons"].write_text(json.dumps(data))
    return {n: where[n] for n in names}
