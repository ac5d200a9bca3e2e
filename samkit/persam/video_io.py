"""Files of the DAVIS layout: indexed (palette) PNG label maps in and out, and a GIF overlay of a
segmented video for people to look at."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from samkit.errors import ImageError
from samkit.image_io import check_pixels


def davis_palette() -> list[int]:
    """The DAVIS / PASCAL VOC palette (256 RGB entries, flattened): 0 black, 1 red, 2 green..."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


def save_indexed_png(labels: np.ndarray, path: str | os.PathLike) -> None:
    """Write an int H x W label map (0 background, 1..255 objects) as a palette PNG (DAVIS)."""
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ImageError(f"an indexed PNG holds labels 0..255, got {labels.min()}..{labels.max()}")
    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    im.putpalette(davis_palette())
    im.save(path)


def read_label_png(path: str | os.PathLike) -> np.ndarray:
    """A label map from a PNG: the palette indices of an indexed PNG (DAVIS), the values of a
    grayscale PNG, or for an RGB PNG 1 wherever a pixel is not black. uint8 H x W."""
    check_pixels(path, what="mask")
    try:
        im = Image.open(path)
        im.load()
    except (OSError, ValueError) as e:
        raise ImageError(f"cannot read the mask {path}: {e}") from e
    if im.mode in ("P", "L"):
        return np.asarray(im, dtype=np.uint8)
    if im.mode in ("1", "I", "I;16"):
        return (np.asarray(im) != 0).astype(np.uint8)
    return np.asarray(im.convert("RGB")).any(axis=2).astype(np.uint8)


def overlay_frame(frame: np.ndarray, labels: np.ndarray, max_side: int = 480) -> Image.Image:
    """A frame (H x W x 3 uint8) with its label map blended in the DAVIS colours, scaled so its
    longer side is at most ``max_side`` (a frame of the GIF overlay)."""
    pal = np.array(davis_palette(), np.float32).reshape(256, 3)
    out = frame.astype(np.float32)
    on = labels > 0
    out[on] = 0.5 * out[on] + 0.5 * pal[labels[on]]
    pic = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    scale = max_side / max(pic.size)
    if scale < 1:
        pic = pic.resize((round(pic.width * scale), round(pic.height * scale)))
    return pic


def save_gif(pics: Sequence[Image.Image], path: str | os.PathLike, fps: float = 8.0) -> None:
    """An animated GIF of ``overlay_frame`` pictures, looping."""
    if not pics:
        raise ImageError("no frames to write into the GIF")
    pics[0].save(
        path, save_all=True, append_images=list(pics[1:]), duration=round(1000 / fps), loop=0
    )


__all__ = ["davis_palette", "overlay_frame", "read_label_png", "save_gif", "save_indexed_png"]
