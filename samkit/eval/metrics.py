"""Mask quality metrics."""

from __future__ import annotations

import numpy as np


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
