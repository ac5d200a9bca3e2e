"""More outputs from one result: COCO polygons, YOLO segmentation labels, the official amg.py
folder of mask PNGs with metadata.csv, and `samkit everything --format` writing each."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import synthetic_image
from PIL import Image

from samkit.formats import (
    AMG_METADATA_HEADER,
    coco_results,
    mask_record,
    with_polygons,
    write_mask_folder,
    write_yolo,
    yolo_lines,
)


def _anns() -> list[dict]:
    a = np.zeros((60, 80), bool)
    a[10:30, 5:25] = True
    b = np.zeros((60, 80), bool)
    b[35:55, 40:78] = True
    return [
        mask_record(a, 0.9, 0.95, [[15.0, 20.0]]),
        mask_record(b, 0.8, 0.97, [[60.0, 45.0]]),
    ]


def test_yolo_lines_are_class_0_with_coordinates_normalised_by_width_and_height() -> None:
    lines = yolo_lines(_anns())
    assert len(lines) == 2
    first = lines[0].split()
    assert first[0] == "0"
    xy = np.array(first[1:], float).reshape(-1, 2)
    assert xy.min() >= 0 and xy.max() <= 1
    # The square's corners, in pixels: x 5..24, y 10..29.
    px = xy * [80, 60]
    assert np.allclose(px.min(0), [5, 10], atol=1e-3)
    assert np.allclose(px.max(0), [24, 29], atol=1e-3)


def test_write_yolo_writes_one_line_per_mask(tmp_path) -> None:  # type: ignore[no-untyped-def]
    write_yolo(_anns(), tmp_path / "img.txt")
    assert len((tmp_path / "img.txt").read_text().splitlines()) == 2
    write_yolo([], tmp_path / "empty.txt")
    assert (tmp_path / "empty.txt").read_text() == ""


def test_mask_folder_has_the_official_amg_layout(tmp_path) -> None:  # type: ignore[no-untyped-def]
    anns = _anns()
    write_mask_folder(anns, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "0.png",
        "1.png",
        "metadata.csv",
    ]
    png = np.array(Image.open(tmp_path / "out" / "0.png"))
    assert png.dtype == np.uint8 and set(np.unique(png)) == {0, 255}
    assert (png == 255).sum() == anns[0]["area"]
    text = (tmp_path / "out" / "metadata.csv").read_text()
    assert text.splitlines()[0] == AMG_METADATA_HEADER
    rows = list(csv.DictReader(text.splitlines()))
    assert rows[1]["id"] == "1" and int(rows[1]["area"]) == anns[1]["area"]
    assert [float(rows[1][k]) for k in ("bbox_x0", "bbox_y0", "bbox_w", "bbox_h")] == anns[1][
        "bbox"
    ]
    assert float(rows[1]["point_input_x"]) == 60.0 and float(rows[1]["stability_score"]) == 0.97
    assert [float(rows[0][f"crop_box_{k}"]) for k in ("x0", "y0", "w", "h")] == [0, 0, 80, 60]


def test_coco_polygon_results_load_in_pycocotools() -> None:
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    anns = _anns()
    results = coco_results(with_polygons(anns), image_id=7)
    assert all(isinstance(r["segmentation"], list) for r in results)
    gt = COCO()
    gt.dataset = {
        "images": [{"id": 7, "width": 80, "height": 60}],
        "annotations": [],
        "categories": [{"id": 1, "name": "object"}],
    }
    gt.createIndex()
    dt = gt.loadRes(results)
    rle = dt.annToRLE(dt.loadAnns([1])[0])
    # Outer contours through pixel centres: the area loses half a pixel along the border.
    assert abs(int(mask_utils.area(rle)) - anns[0]["area"]) <= 2 * 20


@pytest.mark.parametrize(
    "fmt,name", [("polygons", "p.json"), ("yolo", "y.txt"), ("masks", "folder")]
)
def test_everything_cli_writes_each_format(tmp_path, fmt, name) -> None:  # type: ignore[no-untyped-def]
    from samkit.cli import main

    img = tmp_path / "scene.png"
    Image.fromarray(synthetic_image(120, 160, seed=3)).save(img)
    out = tmp_path / name
    argv = [
        "everything", str(img), "-o", str(out), "--format", fmt,
        "--points-per-side", "4", "--no-progress", "--device", "cpu", "--precision", "fp32",
    ]  # fmt: skip
    assert main(argv) == 0
    if fmt == "polygons":
        results = json.loads(out.read_text())
        assert all(isinstance(r["segmentation"], list) for r in results)
    elif fmt == "yolo":
        assert all(line.startswith("0 ") for line in out.read_text().splitlines())
    else:
        assert (out / "metadata.csv").read_text().startswith("id,area,")


def test_everything_cli_checks_the_yolo_suffix_before_running(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from samkit.cli import main

    img = tmp_path / "scene.png"
    Image.fromarray(synthetic_image(60, 80)).save(img)
    assert main(["everything", str(img), "-o", str(tmp_path / "y.json"), "--format", "yolo"]) == 2
    assert ".txt" in capsys.readouterr().err
