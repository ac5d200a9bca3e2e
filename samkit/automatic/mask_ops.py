"""Mask-batch operations of the automatic mask generator: point grids, crop boxes, the
crop-edge filter, small-region cleanup (each matches ``segment_anything.utils.amg``), the batch
of kept masks and their encoding in the full image's frame."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product

import cv2
import numpy as np
import torch

from samkit.masks import encode_rle_fortran


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


@dataclass
class MaskBatch:
    """Kept masks of one crop or image, in the official order. boxes: M x 4 int64 XYXY;
    iou: M float32; points: M x 2 float64; stability: M float32; crop_boxes: M x 4 int64."""

    rles: list[dict] = field(default_factory=list)
    boxes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4, dtype=torch.int64))
    iou: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    points: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 2, dtype=torch.float64))
    stability: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    crop_boxes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4, dtype=torch.int64))

    def __len__(self) -> int:
        return len(self.rles)

    def filter(self, keep: torch.Tensor) -> MaskBatch:
        idx = keep.nonzero().flatten() if keep.dtype == torch.bool else keep
        il = idx.tolist()
        return MaskBatch(
            [self.rles[i] for i in il],
            self.boxes[idx],
            self.iou[idx],
            self.points[idx],
            self.stability[idx],
            self.crop_boxes[idx],
        )

    @staticmethod
    def cat(parts: Sequence[MaskBatch]) -> MaskBatch:
        parts = [p for p in parts if len(p)]
        if not parts:
            return MaskBatch()
        return MaskBatch(
            [r for p in parts for r in p.rles],
            torch.cat([p.boxes for p in parts]),
            torch.cat([p.iou for p in parts]),
            torch.cat([p.points for p in parts]),
            torch.cat([p.stability for p in parts]),
            torch.cat([p.crop_boxes for p in parts]),
        )


def encode_uncropped(
    masks: np.ndarray, crop_box: list[int], orig_size: tuple[int, int]
) -> list[dict]:
    """M x h x w bool masks of a crop -> M COCO RLEs in the full image's frame."""
    if len(masks) == 0:
        return []
    oh, ow = orig_size
    x0, y0, x1, y1 = crop_box
    # pycocotools reads column-major (Fortran) H x W x M without copying: build M x W x H
    # C-order, transposing each mask with OpenCV (10x faster than a strided numpy copy).
    full = (np.empty if [x0, y0, x1, y1] == [0, 0, ow, oh] else np.zeros)(
        (len(masks), ow, oh), dtype=np.uint8
    )
    for i, m in enumerate(masks.view(np.uint8)):
        full[i, x0:x1, y0:y1] = cv2.transpose(m)
    return encode_rle_fortran(full.transpose(2, 1, 0))
