"""Mask IoU and boundary IoU (Cheng et al. 2021), as HQ-SAM evaluates them.

Boundary IoU compares only the bands of width ``d`` inside each mask's contour, with
``d = max(1, round(0.02 * image diagonal))``, so errors along thin parts and fine edges weigh as
much as errors on large interiors. This follows the simplified version in the official HQ-SAM
``train/utils/misc.py`` (``mask_to_boundary`` / ``boundary_iou``): the mask is padded by one zero
pixel so the image border counts as contour, then eroded ``d`` times with a 3 x 3 kernel.
"""

from __future__ import annotations

import cv2
import numpy as np

from samkit.eval.metrics import iou

DILATION_RATIO = 0.02


def boundary_width(h: int, w: int, dilation_ratio: float = DILATION_RATIO) -> int:
    """Band width in pixels for an h x w image: max(1, round(ratio * diagonal))."""
    return max(1, int(round(dilation_ratio * float(np.sqrt(h * h + w * w)))))


def mask_to_boundary(mask: np.ndarray, dilation_ratio: float = DILATION_RATIO) -> np.ndarray:
    """H x W bool mask -> H x W bool inner boundary band (mask minus its erosion)."""
    m = np.asarray(mask, bool)
    h, w = m.shape
    d = boundary_width(h, w, dilation_ratio)
    padded = cv2.copyMakeBorder(m.astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=d)[1 : h + 1, 1 : w + 1]
    return m & ~eroded.astype(bool)


def boundary_iou(pred: np.ndarray, gt: np.ndarray, dilation_ratio: float = DILATION_RATIO) -> float:
    """Boundary IoU of two H x W bool masks (1.0 when both are empty)."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {gt.shape}")
    return iou(mask_to_boundary(pred, dilation_ratio), mask_to_boundary(gt, dilation_ratio))


def mask_scores(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(IoU, boundary IoU) of one H x W prediction against its ground truth."""
    return iou(pred, gt), boundary_iou(pred, gt)
