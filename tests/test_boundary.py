"""Boundary IoU as HQ-SAM computes it, and the thin-structure scenes it is meant for."""

from __future__ import annotations

import numpy as np
import pytest

from samkit.data.thin import THIN_SHAPES, ThinDataset, draw_thin
from samkit.eval.metrics import boundary_iou, boundary_width, iou, mask_scores, mask_to_boundary


def square(x0: int, y0: int, side: int, size: int = 100) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[y0 : y0 + side, x0 : x0 + side] = True
    return m


def test_boundary_width_is_two_percent_of_the_diagonal_at_least_one_pixel() -> None:
    assert boundary_width(100, 100) == 3  # round(0.02 * 141.4)
    assert boundary_width(1024, 1024) == 29
    assert boundary_width(10, 10) == 1


def test_a_mask_against_itself_scores_one() -> None:
    m = square(20, 20, 40)
    assert boundary_iou(m, m) == 1.0
    assert mask_scores(m, m) == (1.0, 1.0)


def test_boundary_of_a_square_is_its_inner_band_of_width_d() -> None:
    band = mask_to_boundary(square(20, 20, 40))
    expected = square(20, 20, 40) & ~square(23, 23, 34)
    np.testing.assert_array_equal(band, expected)


def test_shifted_square_matches_the_analytic_value() -> None:
    # 40 px squares, shifted by 2 px, bands of width 3: each band has 40^2 - 34^2 = 444 px,
    # they share 40 x 38 - 34 x 36 = 296 px, so BIoU = 296 / (2 * 444 - 296) = 0.5
    # while IoU = 1520 / 1680.
    a, b = square(20, 20, 40), square(22, 20, 40)
    assert boundary_iou(a, b) == pytest.approx(0.5)
    assert iou(a, b) == pytest.approx(1520 / 1680)


def test_the_image_border_counts_as_boundary() -> None:
    full = np.ones((100, 100), bool)
    band = mask_to_boundary(full)
    assert band[:3].all() and band[:, :3].all() and not band[3:-3, 3:-3].any()


def test_missing_a_thin_wire_costs_boundary_iou_more_than_iou() -> None:
    gt = square(20, 20, 40)
    gt[38:40, 60:95] = True  # a 2 px wire sticking out of the square
    pred = square(20, 20, 40)
    m_iou, m_biou = mask_scores(pred, gt)
    assert m_iou > 0.95
    assert m_biou < 0.9
    assert (1 - m_biou) > 3 * (1 - m_iou)


def test_both_empty_scores_one_and_shape_mismatch_raises() -> None:
    z = np.zeros((10, 10), bool)
    assert boundary_iou(z, z) == 1.0
    with pytest.raises(ValueError):
        boundary_iou(z, np.zeros((10, 11), bool))


def test_thin_scenes_are_reproducible_and_held_out_seeds_differ() -> None:
    a, b = ThinDataset(seed=3, size=96), ThinDataset(seed=3, size=96)
    img1, m1 = a[5]
    img2, m2 = b[5]
    np.testing.assert_array_equal(img1, img2)
    np.testing.assert_array_equal(m1, m2)
    assert m1.dtype == bool and m1.shape[1:] == (96, 96) and len(m1) >= 1
    assert not np.array_equal(ThinDataset(seed=4, size=96)[5][0], img1)


@pytest.mark.parametrize("shape", ["ring", "wire", "lattice", "tree"])
def test_thin_shapes_are_a_few_pixels_wide(shape: str) -> None:
    import cv2

    rng = np.random.default_rng(0)
    for _ in range(3):
        m = draw_thin(rng, shape, 160) >= 0.5
        assert m.sum() > 20
        depth = cv2.distanceTransform(np.pad(m.astype(np.uint8), 1), cv2.DIST_L2, 5)
        assert depth.max() <= 4  # nowhere more than ~4 px from the background


def test_every_thin_shape_draws_something() -> None:
    rng = np.random.default_rng(1)
    for shape in THIN_SHAPES:
        assert (draw_thin(rng, shape, 128) >= 0.5).sum() > 10
    with pytest.raises(ValueError):
        draw_thin(rng, "cube", 128)
