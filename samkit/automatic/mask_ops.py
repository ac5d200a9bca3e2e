"""Pure helpers of the automatic mask generator: point grids, crop boxes, boxes from masks,
the crop-edge filter and small-region cleanup. Each matches ``segment_anything.utils.amg``."""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import torch


def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n² x 2) float64 cell centres in [0, 1]², x fastest."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs = np.tile(side[None, :], (n_per_side, 1))
    ys = np.tile(side[:, None], (1, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale: int) -> list[np.ndarray]:
    """One grid per crop layer; layer i has int(n / scale**i) points per side."""
    return [build_point_grid(int(n_per_side / (scale**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(
    im_size: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """Crop boxes (XYXY ints) and their layer index; layer 0 is the whole image, layer i >= 1
    has (2^i)² overlapping crops. Order as the official code (x0 outer, y0 inner)."""
    im_h, im_w = im_size
    short = min(im_h, im_w)
    boxes, layers = [[0, 0, im_w, im_h]], [0]

    def crop_len(orig: int, n: int, overlap: int) -> int:
        return int(math.ceil((overlap * (n - 1) + orig) / n))

    for i in range(n_layers):
        n = 2 ** (i + 1)
        overlap = int(overlap_ratio * short * (2 / n))
        cw, ch = crop_len(im_w, n, overlap), crop_len(im_h, n, overlap)
        x0s = [int((cw - overlap) * k) for k in range(n)]
        y0s = [int((ch - overlap) * k) for k in range(n)]
        for x0, y0 in product(x0s, y0s):
            boxes.append([x0, y0, min(x0 + cw, im_w), min(y0 + ch, im_h)])
            layers.append(i + 1)
    return boxes, layers


def near_crop_edge(
    boxes: np.ndarray, crop_box: list[int], orig_box: list[int], atol: float = 20.0
) -> np.ndarray:
    """M x 4 XYXY boxes in crop pixels -> M bool: some side is within ``atol`` of an inner crop
    edge (one that is not also an image edge). Such masks are probably cut by the crop."""
    off = np.array([crop_box[0], crop_box[1], crop_box[0], crop_box[1]])
    b = boxes.astype(np.float64) + off
    near_crop = np.abs(b - np.asarray(crop_box, dtype=np.float64)) <= atol
    near_image = np.abs(b - np.asarray(orig_box, dtype=np.float64)) <= atol
    return (near_crop & ~near_image).any(1)


def remove_small_regions(
    mask: np.ndarray, area_thresh: float, mode: str
) -> tuple[np.ndarray, bool]:
    """Fill holes (mode "holes") or drop islands ("islands") smaller than ``area_thresh``
    (8-connected); if every island is small the largest stays. Returns (mask, changed)."""
    import cv2

    holes = mode == "holes"
    work = (holes ^ mask).astype(np.uint8)
    n, regions, stats, _ = cv2.connectedComponentsWithStats(work, 8)
    sizes = stats[:, -1][1:]
    small = [i + 1 for i, s in enumerate(sizes) if s < area_thresh]
    if not small:
        return mask, False
    fill = [0] + small
    if not holes:
        fill = [i for i in range(n) if i not in fill]
        if not fill:
            fill = [int(np.argmax(sizes)) + 1]
    return np.isin(regions, fill), True
