"""One formats module: SA-1B records and files, COCO datasets and results lists, checked with
pycocotools itself; the same image id from every writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.formats import (
    coco_dataset,
    coco_results,
    image_id_for,
    mask_record,
    sa1b_document,
)
from samkit.masks import decode_rle, mask_to_box, masks_to_boxes


def _squares() -> list[np.ndarray]:
    a = np.zeros((60, 80), bool)
    a[10:30, 5:25] = True
    b = np.zeros((60, 80), bool)
    b[35:55, 40:78] = True
    return [a, b]


def test_one_box_convention_inclusive_xyxy_on_numpy_torch_and_single_masks() -> None:
    a, b = _squares()
    empty = np.zeros_like(a)
    stack = np.stack([a, b, empty])
    want = [[5, 10, 24, 29], [40, 35, 77, 54], [0, 0, 0, 0]]
    assert masks_to_boxes(stack).tolist() == want
    assert masks_to_boxes(torch.from_numpy(stack)).tolist() == want
    from samkit.masks import _masks_to_boxes_torch  # the accelerator path, run on the CPU

    assert _masks_to_boxes_torch(torch.from_numpy(stack)).tolist() == want
    assert mask_to_box(a).tolist() == want[0] and mask_to_box(empty) is None


def test_mask_record_has_the_sa1b_fields_and_the_official_bbox() -> None:
    a, _ = _squares()
    rec = mask_record(a, 0.9, 0.97, [[10.0, 20.0]])
    assert set(rec) == {
        "segmentation",
        "area",
        "bbox",
        "predicted_iou",
        "point_coords",
        "stability_score",
        "crop_box",
    }
    assert rec["bbox"] == [5, 10, 19, 19]  # w = x1 - x0 of the inclusive box, as SA-1B
    assert rec["area"] == 400 and rec["crop_box"] == [0, 0, 80, 60]
    assert (decode_rle(rec["segmentation"]) == a).all()
    json.dumps(rec)  # plain JSON types only


def test_sa1b_document_numbers_annotations_from_one_with_a_stable_image_id() -> None:
    recs = [mask_record(m, 0.5) for m in _squares()]
    doc = sa1b_document(recs, "dir/photo.jpg", 80, 60)
    assert [a["id"] for a in doc["annotations"]] == [1, 2]
    assert (
        doc["image"]["image_id"] == image_id_for("dir/photo.jpg") == image_id_for("dir/photo.jpg")
    )
    assert image_id_for("dir/photo.jpg") != image_id_for("dir/photo2.jpg")


def test_coco_dataset_and_results_list_evaluate_with_pycocotools(tmp_path: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_masks = _squares()
    gt = coco_dataset([sa1b_document([mask_record(m, 1.0) for m in gt_masks], "a.png", 80, 60)])
    for a in gt["annotations"]:
        a["bbox"] = [float(v) for v in a["bbox"]]
    assert [a["id"] for a in gt["annotations"]] == [1, 2]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    coco_gt = COCO(str(tmp_path / "gt.json"))
    # Predictions: the first square exactly, the second shifted by 6 px (IoU 0.54).
    shifted = np.roll(gt_masks[1], 6, axis=0)
    shifted[:6] = False
    preds = [mask_record(gt_masks[0], 0.95), mask_record(shifted, 0.6)]
    res = coco_results(preds, image_id_for("a.png"))
    assert {"image_id", "category_id", "segmentation", "score"} <= set(res[0])
    coco_dt = coco_gt.loadRes(res)
    ev = COCOeval(coco_gt, coco_dt, "segm")
    ev.params.useCats = 0
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    ap, ap50, ap75 = ev.stats[:3]
    assert ap50 == pytest.approx(1.0, abs=1e-6)  # both match at IoU 0.5
    assert ap75 == pytest.approx(0.5, abs=0.02)  # only the exact one at 0.75
    assert 0.5 < ap < 1.0


def test_everything_and_annotate_give_the_same_image_id(tmp_path: Path) -> None:
    from samkit.engine.collect import collect

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "x.png")
    (item,) = collect(folder)
    assert item.image_id == image_id_for("x.png")
