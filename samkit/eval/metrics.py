"""Mask metrics, one home for each: IoU, boundary IoU (Cheng et al. 2021, as HQ-SAM evaluates it)
and SAM's stability score.

Boundary IoU compares only the bands of width ``d`` inside each mask's contour, with
``d = max(1, round(0.02 * image diagonal))``, so errors along thin parts and fine edges weigh as
much as errors on large interiors. This follows the simplified version in the official HQ-SAM
``train/utils/misc.py`` (``mask_to_boundary`` / ``boundary_iou``): the mask is padded by one zero
pixel so the image border counts as contour, then eroded ``d`` times with a 3 x 3 kernel.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

DILATION_RATIO = 0.02


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of two H x W bool masks (1.0 when both are empty)."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {gt.shape}")
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def ious(preds: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of each of K x H x W predictions against one H x W mask -> K float."""
    return np.array([iou(p, gt) for p in preds], dtype=np.float64)


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


def count_above(logits: np.ndarray, thresholds: Sequence[float]) -> list[np.ndarray]:
    """Per-mask counts of values above each threshold (M x H x W float32 -> M int64 each); the
    comparison is in float32, as torch's against a Python scalar. One mask at a time into a
    reused buffer: whole-array count_nonzero takes numpy's fast path, per-axis does not."""
    buf = np.empty(logits.shape[1:], dtype=bool)
    out = [np.zeros(len(logits), dtype=np.int64) for _ in thresholds]
    for i in range(len(logits)):
        for counts, t in zip(out, thresholds):
            np.greater(logits[i], np.float32(t), out=buf)
            counts[i] = np.count_nonzero(buf)
    return out


def stability_scores(logits: np.ndarray, mask_threshold: float, offset: float) -> np.ndarray:
    """SAM's stability score of M x H x W mask logits: IoU of the masks thresholded at
    ``mask_threshold + offset`` and ``mask_threshold - offset`` (the first lies inside the
    second, so it is a ratio of counts) -> M float32; 0 where the looser mask is empty."""
    inter, union = count_above(logits, (mask_threshold + offset, mask_threshold - offset))
    out = np.zeros(len(logits), dtype=np.float32)
    np.divide(inter.astype(np.float32), union.astype(np.float32), out=out, where=union > 0)
    return out
