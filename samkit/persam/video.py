"""PerSAM over many images: a collection through the encoder in batches, and video frames in
order with the previous frame's box as a hint. Each image is segmented by ``PerSAM`` alone."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from samkit.errors import ImageError
from samkit.image_io import IMAGE_SUFFIXES, ImageLike
from samkit.masks import mask_to_box

if TYPE_CHECKING:  # persam.py imports this module for PerSAM's methods
    from samkit.persam.persam import PerSAM, PersonalizedMask


def segment_many(
    per: PerSAM, images: Iterable[ImageLike], batch_size: int = 4
) -> Iterator[PersonalizedMask]:
    """One result per image, in order; images go through the encoder ``batch_size`` at a time
    and are read only as their batch comes up."""
    chunk: list[ImageLike] = []
    for im in images:
        chunk.append(im)
        if len(chunk) == batch_size:
            yield from _segment_chunk(per, chunk, batch_size)
            chunk = []
    if chunk:
        yield from _segment_chunk(per, chunk, batch_size)


def _segment_chunk(
    per: PerSAM, images: list[ImageLike], batch_size: int
) -> Iterator[PersonalizedMask]:
    for emb in per.embed(images, batch_size):
        yield per.segment_embedding(emb)


def segment_video(
    per: PerSAM,
    frames: Iterable[ImageLike] | str | os.PathLike,
    follow: bool = True,
    margin: int = 10,
) -> Iterator[PersonalizedMask]:
    """Segment frames in order (arrays, or a folder of images sorted by name), one result
    per frame, lazily. Each frame is segmented on its own; with ``follow`` the previous
    non-empty mask's box, grown by ``margin`` pixels, is given to the first decoder pass
    as a hint. No memory beyond that box: no tracking, no re-identification."""
    if isinstance(frames, (str, os.PathLike)):
        frames = list_images(frames)
    prev: np.ndarray | None = None
    for frame in frames:
        emb = per.embed([frame])[0]
        hint = None
        if follow and prev is not None:
            h, w = emb.original_size
            hint = np.array(
                [
                    max(prev[0] - margin, 0),
                    max(prev[1] - margin, 0),
                    min(prev[2] + margin, w - 1),
                    min(prev[3] + margin, h - 1),
                ]
            )
        res = per.segment_embedding(emb, hint)
        box = mask_to_box(res.mask)
        if box is not None:
            prev = box
        yield res


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files in a folder, sorted by name (video frames)."""
    root = Path(folder)
    if not root.is_dir():
        raise ImageError(f"{root} is not a folder of frames")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ImageError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root}")
    return files


__all__ = ["list_images", "segment_many", "segment_video"]
