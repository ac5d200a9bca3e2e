"""A project's accepted objects as files, through ``samkit.formats``: COCO instances (RLE or
polygons), YOLO segmentation labels and PNG instance maps (zips). Masks are decoded one image
at a time, so memory follows the largest image, not the project."""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from samkit import formats
from samkit.masks import decode_rle
from samkit.server.db import ImageRow

EXPORT_FORMATS = ("coco", "coco-polygons", "yolo", "png")
Objects = Callable[[str], list[dict[str, Any]]]


def export_project(
    info: dict[str, Any], images: list[ImageRow], objects_of: Objects, fmt: str
) -> tuple[bytes, str, str]:
    """(file bytes, media type, file-name suffix) of a project in ``fmt``."""
    names = file_names(images)
    cats = categories(info["categories"], images, objects_of)
    if fmt in ("coco", "coco-polygons"):
        data = coco(images, names, cats, objects_of, polygons=fmt == "coco-polygons")
        return json.dumps(data).encode(), "application/json", f".{fmt}.json"
    if fmt == "yolo":
        return yolo_zip(images, names, cats, objects_of), "application/zip", ".yolo.zip"
    return png_zip(images, names, cats, objects_of), "application/zip", ".masks.zip"


def file_names(images: list[ImageRow]) -> list[str]:
    """Each image's name in the export: its path in the folder, or its upload name made unique
    (``name``, ``name-2``, ...): COCO image ids are derived from it."""
    seen: set[str] = set()
    out = []
    for im in images:
        name, k = im.name, 1
        while name in seen:
            k += 1
            p = PurePosixPath(im.name)
            name = f"{p.stem}-{k}{p.suffix}"
        seen.add(name)
        out.append(name)
    return out


def categories(declared: list[str], images: list[ImageRow], objects_of: Objects) -> list[str]:
    """The project's categories in order, then any other label an object has."""
    out = list(declared)
    for im in images:
        for o in objects_of(im.id):
            if o["category"] not in out:
                out.append(o["category"])
    return out


def coco(
    images: list[ImageRow],
    names: list[str],
    cats: list[str],
    objects_of: Objects,
    polygons: bool = False,
) -> dict[str, Any]:
    """COCO instances; ``polygons``: outer contours (``formats.mask_to_polygons``), RLE kept
    for a mask too small to have one. ``score`` is the object's predicted IoU when it had one."""
    docs = []
    for im, name in zip(images, names):
        anns = []
        for o in objects_of(im.id):
            seg: Any = o["rle"]
            if polygons:
                seg = formats.mask_to_polygons(decode_rle(o["rle"])) or o["rle"]
            a = {"segmentation": seg, "area": o["area"], "bbox": o["bbox"]}
            a["category_id"] = cats.index(o["category"]) + 1
            if o["score"] is not None:
                a["predicted_iou"] = o["score"]
            anns.append(a)
        docs.append(formats.sa1b_document(anns, name, im.width, im.height))
    data = formats.coco_dataset(
        docs,
        categories=[{"id": i + 1, "name": c, "supercategory": c} for i, c in enumerate(cats)],
        description="samkit serve project",
    )
    for a in data["annotations"]:
        if a["score"] is None:
            del a["score"]
    return data


def yolo_zip(
    images: list[ImageRow], names: list[str], cats: list[str], objects_of: Objects
) -> bytes:
    """``labels/<image stem>.txt`` per image (``formats.yolo_lines``: the largest outer contour
    of each object, classes from 0) and ``data.yaml`` with the names."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for im, name in zip(images, names):
            lines = []
            for o in objects_of(im.id):
                lines += formats.yolo_lines([{"segmentation": o["rle"]}], cats.index(o["category"]))
            z.writestr(f"labels/{_stem(name)}.txt", "".join(x + "\n" for x in lines))
        yaml = "names:\n" + "".join(f"  {i}: {json.dumps(c)}\n" for i, c in enumerate(cats))
        z.writestr("data.yaml", yaml)
    return buf.getvalue()


def png_zip(
    images: list[ImageRow], names: list[str], cats: list[str], objects_of: Objects
) -> bytes:
    """``masks/<image stem>.png``: an instance label map per image (0 = none, k = the k-th
    object, ``formats.label_map``), and ``instances.json``: each image's objects (category,
    id) by label value."""
    buf = io.BytesIO()
    index: dict[str, Any] = {"categories": cats, "images": {}}
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z, tempfile.TemporaryDirectory() as tmp:
        for im, name in zip(images, names):
            objs = objects_of(im.id)
            labels = formats.label_map([decode_rle(o["rle"]) for o in objs], (im.height, im.width))
            path = Path(tmp) / "map.png"
            formats.save_label_map_png(labels, path)
            z.write(path, f"masks/{_stem(name)}.png")
            index["images"][name] = [
                {"label": k + 1, "category": o["category"], "id": o["id"]}
                for k, o in enumerate(objs)
            ]
        z.writestr("instances.json", json.dumps(index, indent=1))
    return buf.getvalue()


def _stem(name: str) -> str:
    """A relative path without its suffix, with no way out of the archive's folder."""
    parts = [p for p in PurePosixPath(name).with_suffix("").parts if p not in ("", ".", "..")]
    return "/".join(parts) or "image"
