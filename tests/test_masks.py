"""Mask encodings (RLE, COCO RLE, polygons, label maps) against pycocotools and the official
segment_anything helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.formats import label_map, mask_to_polygons, save_label_map_png
from samkit.masks import (
    coco_to_uncompressed,
    decode_rle,
    encode_rle,
    overlay_annotations,
    rle_area,
    uncompressed_rle,
    uncompressed_to_coco,
)


@pytest.fixture
def masks() -> np.ndarray:
    rng = np.random.default_rng(0)
    m = rng.random((4, 37, 53)) > 0.6
    m[1] = False
    m[2] = True
    m[3, 0, 0] = True
    return m


def test_uncompressed_rle_equals_official_mask_to_rle(masks) -> None:
    from segment_anything.utils.amg import mask_to_rle_pytorch

    expected = mask_to_rle_pytorch(torch.from_numpy(masks))
    assert [uncompressed_rle(m) for m in masks] == expected


def test_coco_rle_equals_official_coco_encode_and_round_trips(masks) -> None:
    from segment_anything.utils.amg import coco_encode_rle

    rles = encode_rle(masks)
    assert rles == [coco_encode_rle(uncompressed_rle(m)) for m in masks]
    assert all(isinstance(r["counts"], str) for r in rles)
    for m, r in zip(masks, rles):
        np.testing.assert_array_equal(decode_rle(r), m)
        assert rle_area(r) == m.sum() == rle_area(uncompressed_rle(m))
        assert coco_to_uncompressed(r) == uncompressed_rle(m)
        assert uncompressed_to_coco(uncompressed_rle(m)) == r


def test_polygons_outline_a_square() -> None:
    m = np.zeros((20, 30), bool)
    m[5:10, 10:20] = True
    polys = mask_to_polygons(m)
    assert len(polys) == 1
    xy = np.array(polys[0]).reshape(-1, 2)
    assert xy[:, 0].min() == 10 and xy[:, 0].max() == 19
    assert xy[:, 1].min() == 5 and xy[:, 1].max() == 9


def test_label_map_keeps_small_masks_on_top_and_saves_png(tmp_path) -> None:
    big = np.ones((10, 10), bool)
    small = np.zeros((10, 10), bool)
    small[2:4, 2:4] = True
    labels = label_map([small, big])
    assert labels[2, 2] == 1 and labels[0, 0] == 2
    save_label_map_png(labels, tmp_path / "l.png")
    np.testing.assert_array_equal(np.array(Image.open(tmp_path / "l.png")), labels)


def test_overlay_of_annotations_has_image_size(masks) -> None:
    img = np.zeros((37, 53, 3), np.uint8)
    anns = [{"segmentation": r} for r in encode_rle(masks)]
    pic = overlay_annotations(img, anns)
    assert pic.size == (53, 37)
    assert np.array(pic).any()
