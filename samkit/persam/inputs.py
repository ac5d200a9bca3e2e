"""How PerSAM reads its inputs: images (OpenCV for files, as the official scripts) and reference
masks (the official RGB view of the mask, before pooling)."""

from __future__ import annotations

import os

import numpy as np

from samkit.errors import ImageError, PromptError
from samkit.image_io import ImageLike, check_pixels, load_image


def read_image(image: ImageLike, faithful: bool = True) -> np.ndarray:
    """RGB uint8 H x W x 3. Faithful: files are decoded by OpenCV, as the official scripts do
    (JPEG decoders differ by +-1); everything else goes through ``samkit.image_io``."""
    if faithful and isinstance(image, (str, os.PathLike)):
        import cv2

        check_pixels(image)  # OpenCV decodes whatever it is given: the pixel limit first
        bgr = cv2.imread(str(image), cv2.IMREAD_COLOR)
        if bgr is not None:
            return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return load_image(image)


def read_reference_mask(mask: ImageLike, size: tuple[int, int]) -> np.ndarray:
    """The reference mask as the official code sees it: RGB uint8 H x W x 3.

    Files are decoded by OpenCV (a PerSeg palette PNG gives (128, 0, 0) on the object); PIL
    images are converted to RGB; H x W x 3 uint8 arrays are used as they are; other arrays are
    binary (nonzero = object) and become 255 in every channel, like a 0/255 PNG.
    """
    if isinstance(mask, (str, os.PathLike)):
        import cv2

        check_pixels(mask, what="reference mask")
        bgr = cv2.imread(str(mask), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ImageError(f"cannot read the reference mask {mask}: not an image file")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    elif hasattr(mask, "convert"):
        rgb = np.asarray(mask.convert("RGB"))  # type: ignore[union-attr]
    else:
        arr = np.asarray(mask)
        if arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8:
            rgb = arr
        elif arr.ndim == 2:
            rgb = np.repeat(((arr != 0) * 255).astype(np.uint8)[..., None], 3, axis=2)
        else:
            raise ImageError(
                f"a reference mask must be H x W or H x W x 3 uint8, got shape {arr.shape} "
                f"dtype {arr.dtype}"
            )
    if rgb.shape[:2] != tuple(size):
        raise ImageError(
            f"reference mask size {rgb.shape[1]}x{rgb.shape[0]} (WxH) does not match the "
            f"reference image {size[1]}x{size[0]}; give the mask of this image"
        )
    if not rgb.any():
        raise PromptError(
            "the reference mask is empty (all zero): mark the object with nonzero pixels"
        )
    return np.ascontiguousarray(rgb)


__all__ = ["read_image", "read_reference_mask"]
