"""Mask utilities: PNG files, pictures for people to look at (overlays), and encodings."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

# A fixed, well-separated palette so the same mask index gets the same color everywhere.
_PALETTE = np.array(
    [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [214, 39, 40],
        [148, 103, 189],
        [140, 86, 75],
        [227, 119, 194],
        [127, 127, 127],
        [188, 189, 34],
        [23, 190, 207],
    ],
    dtype=np.uint8,
)


def color(i: int) -> np.ndarray:
    """RGB color of the i-th mask (cycles a 10-color palette, then random but seeded)."""
    if i < len(_PALETTE):
        return _PALETTE[i]
    return np.random.default_rng(i).integers(40, 255, 3).astype(np.uint8)


def save_mask_png(mask: np.ndarray, path: str | os.PathLike) -> None:
    """Write a bool H x W mask as an 8-bit PNG (255 = object)."""
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def overlay(
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    alpha: float = 0.5,
    points: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    box: Sequence[float] | None = None,
    outline: bool = True,
) -> Image.Image:
    """Draw masks (bool H x W each, in order, later on top) over an RGB image, with optional
    prompt points (green = object, red = background) and a box."""
    out = image.astype(np.float32).copy()
    for i, m in enumerate(masks):
        c = color(i).astype(np.float32)
        out[m] = (1 - alpha) * out[m] + alpha * c
        if outline:
            edge = m & ~_erode(m)
            out[edge] = c
    pic = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pic)
    r = max(3, round(max(image.shape[:2]) / 150))
    if box is not None:
        draw.rectangle([float(v) for v in box], outline=(255, 255, 0), width=max(2, r // 2))
    if points is not None:
        for (x, y), lab in zip(
            np.asarray(points), np.asarray(labels if labels is not None else [])
        ):
            fill = (0, 220, 0) if lab == 1 else (230, 0, 0)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=(255, 255, 255))
    return pic


def _erode(m: np.ndarray) -> np.ndarray:
    e = m.copy()
    e[1:] &= m[:-1]
    e[:-1] &= m[1:]
    e[:, 1:] &= m[:, :-1]
    e[:, :-1] &= m[:, 1:]
    return e
