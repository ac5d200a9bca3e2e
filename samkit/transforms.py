"""Coordinate and image transforms between original-image pixels and the model's input frame
(resize so the longest side equals the model's image size), in both directions."""

from __future__ import annotations

import numpy as np
from PIL import Image


def preprocess_shape(h: int, w: int, long_side: int) -> tuple[int, int]:
    """Size (h', w') after resizing so that max(h', w') == long_side (official rounding)."""
    scale = long_side * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def resize_image(image: np.ndarray, long_side: int) -> np.ndarray:
    """RGB uint8 H x W x 3 -> uint8 h' x w' x 3 with PIL bilinear (antialiased), as the
    official ResizeLongestSide.apply_image does through torchvision."""
    h, w = image.shape[:2]
    nh, nw = preprocess_shape(h, w, long_side)
    if (nh, nw) == (h, w):
        return image
    return np.array(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))


def coords_to_input(
    coords: np.ndarray, original_size: tuple[int, int], long_side: int
) -> np.ndarray:
    """... x 2 (x, y) original pixels -> float64 input-frame pixels."""
    h, w = original_size
    nh, nw = preprocess_shape(h, w, long_side)
    out = np.array(coords, dtype=np.float64, copy=True)
    out[..., 0] = out[..., 0] * (nw / w)
    out[..., 1] = out[..., 1] * (nh / h)
    return out


def boxes_to_input(boxes: np.ndarray, original_size: tuple[int, int], long_side: int) -> np.ndarray:
    """... x 4 XYXY original pixels -> float64 input-frame pixels."""
    b = np.asarray(boxes, dtype=np.float64)
    return coords_to_input(b.reshape(-1, 2, 2), original_size, long_side).reshape(b.shape)


def coords_to_original(
    coords: np.ndarray, original_size: tuple[int, int], long_side: int
) -> np.ndarray:
    """Inverse of ``coords_to_input``."""
    h, w = original_size
    nh, nw = preprocess_shape(h, w, long_side)
    out = np.array(coords, dtype=np.float64, copy=True)
    out[..., 0] = out[..., 0] * (w / nw)
    out[..., 1] = out[..., 1] * (h / nh)
    return out
