"""PerSeg evaluation, PerSAM's protocol (``eval_miou.py`` of the official repository).

PRED_DIR/<class>/<NN>.png against GT_DIR/<class>/<NN>.png (PerSeg ``Annotations``). Masks are
read as the official script does (OpenCV, gray > 0). Per class the intersections, unions and
ground-truth areas are **summed over the class's test images** (not averaged per image):
IoU = sum(I) / sum(U), Acc = sum(I) / sum(|G|); mIoU and mAcc are the means over classes, in
percent. bIoU, which the paper reports but the official code does not contain, is computed the
same way on boundary bands (``samkit.eval.metrics.mask_to_boundary``, dilation ratio 0.02,
Cheng et al.'s Boundary IoU): sum of band intersections over sum of band unions per class.

Two official quirks are fixed, both documented in docs/persam.md: the reference is skipped by
its name (``00.png``), not by a substring test on the whole path (which also skips any file
whose path contains "00"); and predictions are matched to ground truth by file name, not
zipped by sorted position (a missing prediction counts as an empty mask instead of shifting
every later pair).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from samkit.errors import ImageError
from samkit.eval.metrics import DILATION_RATIO, mask_to_boundary


def read_binary(path: str | os.PathLike) -> np.ndarray:
    """bool H x W: OpenCV's gray conversion > 0, as ``eval_miou.py`` reads masks."""
    import cv2

    from samkit.image_io import check_pixels

    check_pixels(path, what="mask")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError(f"cannot read the mask {path}: not an image file")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) > 0


def evaluate_perseg(
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    ref_idx: str = "00",
    dilation_ratio: float = DILATION_RATIO,
) -> dict:
    """{"mIoU", "mAcc", "bIoU"} in percent and "classes": {name: {"IoU", "Acc", "bIoU",
    "images"}}. Classes are the folders of ``gt_dir``."""
    gt_root, pred_root = Path(gt_dir), Path(pred_dir)
    if not gt_root.is_dir() or not pred_root.is_dir():
        raise ImageError(f"{gt_root} and {pred_root} must both be folders of class folders")
    classes = sorted(p.name for p in gt_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ImageError(f"no class folders in {gt_root}")
    per_class = {}
    for cls in classes:
        inter = union = target = b_inter = b_union = 0
        n = 0
        for gt_path in sorted((gt_root / cls).rglob("*.png")):
            if gt_path.stem == ref_idx:
                continue
            gt = read_binary(gt_path)
            pred_path = pred_root / cls / gt_path.relative_to(gt_root / cls)
            pred = read_binary(pred_path) if pred_path.exists() else np.zeros_like(gt)
            if pred.shape != gt.shape:
                raise ImageError(
                    f"{pred_path} is {pred.shape[1]}x{pred.shape[0]} but its ground truth is "
                    f"{gt.shape[1]}x{gt.shape[0]} (WxH)"
                )
            inter += int((pred & gt).sum())
            union += int((pred | gt).sum())
            target += int(gt.sum())
            pb, gb = mask_to_boundary(pred, dilation_ratio), mask_to_boundary(gt, dilation_ratio)
            b_inter += int((pb & gb).sum())
            b_union += int((pb | gb).sum())
            n += 1
        per_class[cls] = {
            "IoU": inter / (union + 1e-10),
            "Acc": inter / (target + 1e-10),
            "bIoU": b_inter / (b_union + 1e-10),
            "images": n,
        }
    return {
        "mIoU": 100 * float(np.mean([c["IoU"] for c in per_class.values()])),
        "mAcc": 100 * float(np.mean([c["Acc"] for c in per_class.values()])),
        "bIoU": 100 * float(np.mean([c["bIoU"] for c in per_class.values()])),
        "classes": per_class,
    }


__all__ = ["evaluate_perseg", "read_binary"]
