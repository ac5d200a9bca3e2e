"""Mask utilities: boxes, PNG files, pictures for people to look at (overlays), and encodings.

Box convention, everywhere in samkit: XYXY with x1, y1 the index of the last object pixel
(inclusive), as the official SAM ``batched_mask_to_box``; an empty mask has the box [0, 0, 0, 0].
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch
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


_Boxes = TypeVar("_Boxes", np.ndarray, torch.Tensor)


def masks_to_boxes(masks: _Boxes) -> _Boxes:
    """M x H x W bool masks (numpy or torch) -> M x 4 int64 XYXY boxes, x1/y1 inclusive;
    [0, 0, 0, 0] for an empty mask. Returns the input's array type (torch on the input's device).
    """
    if isinstance(masks, torch.Tensor):
        if masks.device.type == "cpu":
            return torch.from_numpy(masks_to_boxes(masks.numpy()))
        return _masks_to_boxes_torch(masks)
    m, h, w = masks.shape
    if m == 0:
        return np.zeros((0, 4), dtype=np.int64)
    # numpy's any() is several times faster than torch's on bool masks.
    rows, cols = masks.any(2), masks.any(1)
    top, left = rows.argmax(1), cols.argmax(1)
    bottom = h - 1 - rows[:, ::-1].argmax(1)
    right = w - 1 - cols[:, ::-1].argmax(1)
    out = np.stack([left, top, right, bottom], -1).astype(np.int64)
    return out * rows.any(1, keepdims=True)


def _masks_to_boxes_torch(masks: torch.Tensor) -> torch.Tensor:
    """The same on an accelerator, without a copy to the host."""
    m, h, w = masks.shape
    rows, cols = masks.any(2), masks.any(1)
    ar_y = torch.arange(h, device=masks.device).expand(m, h)
    ar_x = torch.arange(w, device=masks.device).expand(m, w)
    y0 = torch.where(rows, ar_y, h).amin(1)
    y1 = torch.where(rows, ar_y, -1).amax(1)
    x0 = torch.where(cols, ar_x, w).amin(1)
    x1 = torch.where(cols, ar_x, -1).amax(1)
    out = torch.stack([x0, y0, x1, y1], 1)
    return out * rows.any(1, keepdim=True)


def mask_to_box(mask: np.ndarray) -> np.ndarray | None:
    """H x W bool mask -> its XYXY box (x1/y1 inclusive) as int64 (4,), or None if empty."""
    if not mask.any():
        return None
    return masks_to_boxes(mask[None])[0]


def box_xyxy_to_xywh(box: Sequence[float]) -> list[float]:
    """XYXY -> XYWH with w = x1 - x0, as the official SAM writes SA-1B ``bbox``."""
    x0, y0, x1, y1 = box
    return [x0, y0, x1 - x0, y1 - y0]


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


# -- encodings ------------------------------------------------------------------------------
# COCO RLE (compressed, ``{"size": [h, w], "counts": str}``) is what SA-1B files hold; the
# uncompressed form (``"counts": [ints]``, column-major runs starting with a 0-run) is what the
# official generator returns for ``output_mode="uncompressed_rle"``.

Rle = dict  # {"size": [h, w], "counts": str | bytes | list[int]}


def _as_bool_stack(masks: np.ndarray) -> np.ndarray:
    m = np.asarray(masks)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise ValueError(f"masks must be H x W or N x H x W, got shape {m.shape}")
    return m.astype(bool, copy=False)


def encode_rle(masks: np.ndarray) -> list[Rle]:
    """N x H x W (or H x W) bool -> N COCO RLEs with str counts (JSON-ready), via pycocotools."""
    from pycocotools import mask as mask_utils

    m = _as_bool_stack(masks)
    rles = mask_utils.encode(np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8)))
    return [_jsonable(r) for r in rles]


def encode_rle_fortran(masks_hwn: np.ndarray) -> list[Rle]:
    """H x W x N uint8 array in Fortran order (no copy) -> N COCO RLEs with str counts."""
    from pycocotools import mask as mask_utils

    return [_jsonable(r) for r in mask_utils.encode(masks_hwn)]


def _jsonable(rle: dict) -> Rle:
    c = rle["counts"]
    return {
        "size": [int(v) for v in rle["size"]],
        "counts": c.decode() if isinstance(c, bytes) else c,
    }


def _coco(rle: Rle) -> dict:
    """Any RLE -> the pycocotools object (compressed, bytes counts)."""
    from pycocotools import mask as mask_utils

    h, w = rle["size"]
    c = rle["counts"]
    if isinstance(c, list):
        return mask_utils.frPyObjects({"size": [h, w], "counts": c}, h, w)
    return {"size": [h, w], "counts": c.encode() if isinstance(c, str) else c}


def decode_rle(rle: Rle) -> np.ndarray:
    """COCO (compressed) or uncompressed RLE -> bool H x W."""
    from pycocotools import mask as mask_utils

    return mask_utils.decode(_coco(rle)).astype(bool)


def rle_area(rle: Rle) -> int:
    """Number of pixels of an RLE mask (either form)."""
    if isinstance(rle["counts"], list):
        return int(sum(rle["counts"][1::2]))
    from pycocotools import mask as mask_utils

    return int(mask_utils.area(_coco(rle)))


def uncompressed_rle(mask: np.ndarray) -> Rle:
    """bool H x W -> uncompressed RLE, exactly the official ``mask_to_rle_pytorch`` format:
    column-major runs, starting with the count of leading zeros (0 if the first pixel is set)."""
    m = np.asarray(mask, dtype=bool)
    h, w = m.shape
    flat = m.T.reshape(-1)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [h * w]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [h, w], "counts": counts}


def coco_to_uncompressed(rle: Rle) -> Rle:
    """COCO RLE -> uncompressed RLE (official format)."""
    return uncompressed_rle(decode_rle(rle))


def uncompressed_to_coco(rle: Rle) -> Rle:
    """Uncompressed RLE -> COCO RLE with str counts (as the official ``coco_encode_rle``)."""
    return _jsonable(_coco(rle))


def annotation_masks(anns: Sequence[dict]) -> list[np.ndarray]:
    """The bool H x W masks of generator records, whatever their ``output_mode``."""
    out = []
    for a in anns:
        seg = a["segmentation"]
        out.append(decode_rle(seg) if isinstance(seg, dict) else np.asarray(seg, dtype=bool))
    return out


def overlay_annotations(image: np.ndarray, anns: Sequence[dict], alpha: float = 0.5) -> Image.Image:
    """All generator records drawn over the image, largest first (small ones stay visible)."""
    masks = annotation_masks(anns)
    order = sorted(range(len(masks)), key=lambda k: -int(masks[k].sum()))
    return overlay(image, [masks[k] for k in order], alpha=alpha)
