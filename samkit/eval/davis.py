"""DAVIS 2017 semi-supervised evaluation with the official definitions (``davis2017-evaluation``,
which PerSAM's ``eval_video.py`` copies; not on PyPI, so re-implemented here and tested on
hand-computed cases).

PRED_DIR/<sequence>/<frame>.png and GT_DIR/<sequence>/<frame>.png (``Annotations/480p``):
indexed PNGs, 0 background, 255 void. The objects of a sequence are 1..max label of its first
ground-truth frame. Only frames 1..T-2 are scored (the first, given, and the last are not).
- J: region IoU per object and frame; an object absent from both masks scores 1. Void pixels
  are left out.
- F: boundary F-measure: the official one-pixel boundary map (``seg2bmap``), each boundary
  dilated by a disk of radius ceil(0.008 x image diagonal), precision = predicted boundary
  within the ground truth's disk, recall the reverse; both empty scores 1, one empty 0.
- Per object the mean over frames (J_M, F_M); J and F are the means over every object of every
  sequence, JF = (J + F) / 2, in percent (DAVIS's "J&F-Mean").
A missing prediction frame counts as empty.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from samkit.errors import ImageError

BOUND_TH = 0.008


def region_j(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> float:
    """Region similarity J of two bool H x W masks, void pixels left out (1 when both empty)."""
    if void is not None:
        pred, gt = pred & ~void, gt & ~void
    union = int((pred | gt).sum())
    return 1.0 if union == 0 else int((pred & gt).sum()) / union


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """The official one-pixel boundary map of a bool H x W mask: pixels that differ from their
    right, lower or lower-right neighbour (outside the image counts as background)."""
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def _disk(r: int) -> np.ndarray:
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y <= r * r).astype(np.uint8)


def boundary_f(
    pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None, bound_th: float = BOUND_TH
) -> float:
    """Boundary F-measure of two bool H x W masks (DAVIS's ``db_eval_boundary``)."""
    import cv2

    if void is not None:
        pred, gt = pred & ~void, gt & ~void
    h, w = gt.shape
    r = bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(h, w))
    fg, gb = seg2bmap(pred), seg2bmap(gt)
    disk = _disk(int(r))
    fg_dil = cv2.dilate(fg.astype(np.uint8), disk) > 0
    gt_dil = cv2.dilate(gb.astype(np.uint8), disk) > 0
    n_fg, n_gt = int(fg.sum()), int(gb.sum())
    if n_fg == 0 and n_gt == 0:
        return 1.0
    if n_fg == 0 or n_gt == 0:
        return 0.0
    precision = int((fg & gt_dil).sum()) / n_fg
    recall = int((gb & fg_dil).sum()) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _sequences(pred_root: Path, gt_root: Path) -> list[tuple[str, Path, Path]]:
    if any(pred_root.glob("*.png")):  # one sequence given directly
        return [(pred_root.name, pred_root, gt_root)]
    seqs = sorted(p.name for p in pred_root.iterdir() if p.is_dir())
    if not seqs:
        raise ImageError(f"no sequence folders (or PNGs) in {pred_root}")
    return [(s, pred_root / s, gt_root / s) for s in seqs]


def evaluate_davis(
    pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, bound_th: float = BOUND_TH
) -> dict:
    """{"J", "F", "JF"} in percent and "sequences": {name: {"J": [per object], "F": [...]}}."""
    from samkit.persam.video_io import read_label_png

    out: dict = {}
    js: list[float] = []
    fs: list[float] = []
    for name, pred_seq, gt_seq in _sequences(Path(pred_dir), Path(gt_dir)):
        frames = sorted(gt_seq.glob("*.png"))
        if not frames:
            raise ImageError(f"no ground-truth PNGs for sequence {name} in {gt_seq}")
        first = read_label_png(frames[0])
        n_obj = int(first[first != 255].max()) if (first != 255).any() else 0
        j = np.zeros((n_obj, max(len(frames) - 2, 0)))
        f = np.zeros_like(j)
        for t, gt_path in enumerate(frames[1:-1]):
            gt = read_label_png(gt_path)
            p_path = pred_seq / gt_path.name
            pred = read_label_png(p_path) if p_path.exists() else np.zeros_like(gt)
            if pred.shape != gt.shape:
                raise ImageError(f"{p_path} and {gt_path} differ in size")
            void = gt == 255
            for k in range(n_obj):
                j[k, t] = region_j(pred == k + 1, gt == k + 1, void)
                f[k, t] = boundary_f(pred == k + 1, gt == k + 1, void, bound_th)
        jm = j.mean(1) if j.shape[1] else np.ones(n_obj)
        fm = f.mean(1) if f.shape[1] else np.ones(n_obj)
        out[name] = {"J": jm.tolist(), "F": fm.tolist()}
        js += jm.tolist()
        fs += fm.tolist()
    if not js:
        raise ImageError(f"no objects to evaluate in {gt_dir}")
    jmean, fmean = 100 * float(np.mean(js)), 100 * float(np.mean(fs))
    return {"J": jmean, "F": fmean, "JF": (jmean + fmean) / 2, "sequences": out}


__all__ = ["boundary_f", "evaluate_davis", "region_j", "seg2bmap"]
