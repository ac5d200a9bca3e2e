"""The one place that turns paths, PIL images and numpy arrays into RGB uint8 H x W x 3 arrays
(and masks into bool H x W arrays).

Handles EXIF orientation, grayscale, RGBA/LA (alpha dropped), palette, 16-bit and float images.
Images larger than ``MAX_PIXELS`` (default 200 megapixels, override with the environment
variable ``SAMKIT_MAX_PIXELS``) are refused before decoding to protect against decompression
bombs.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from samkit.errors import ImageError

ImageLike = str | os.PathLike | Image.Image | np.ndarray
# The one list of file endings samkit treats as images (folders, collections, PerSAM targets).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MAX_PIXELS = int(os.environ.get("SAMKIT_MAX_PIXELS", 200_000_000))


def load_image(image: ImageLike) -> np.ndarray:
    """Return the image as a C-contiguous RGB uint8 H x W x 3 array."""
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, "array")
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image, "PIL image")
    if isinstance(image, (str, os.PathLike)):
        return _pil_to_rgb(_open(Path(image)), str(image))
    raise ImageError(
        f"cannot read an image from a {type(image).__name__}; "
        "pass a file path, a PIL.Image or an H x W x 3 uint8 numpy array"
    )


def load_mask(mask: ImageLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Return a bool H x W mask: any nonzero value (palette index, gray level or any RGB
    channel) is object. If size (H, W) is given, the mask must have that size."""
    if isinstance(mask, (str, os.PathLike)):
        arr = np.asarray(ImageOps.exif_transpose(_open(Path(mask))))
    elif isinstance(mask, Image.Image):
        arr = np.asarray(mask)
    elif isinstance(mask, np.ndarray):
        arr = mask
    else:
        raise ImageError(f"cannot read a mask from a {type(mask).__name__}; pass a path or array")
    if arr.ndim == 3:
        arr = arr.any(axis=2)
    if arr.ndim != 2:
        raise ImageError(f"a mask must be H x W (or H x W x C), got shape {arr.shape}")
    out = arr != 0
    if size is not None and out.shape != tuple(size):
        raise ImageError(
            f"mask size {out.shape[1]}x{out.shape[0]} (WxH) does not match the image size "
            f"{size[1]}x{size[0]}; resize the mask to the image first"
        )
    return out


def _open(path: Path) -> Image.Image:
    if not path.exists():
        raise ImageError(f"image file not found: {path}")
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image file")
    if path.stat().st_size == 0:
        raise ImageError(f"image file is empty (0 bytes): {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageError(
                    f"{path} is {w}x{h} = {w * h / 1e6:.0f} megapixels, above the limit of "
                    f"{MAX_PIXELS / 1e6:.0f}; downscale it or raise SAMKIT_MAX_PIXELS"
                )
            img.load()
            return img
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(
            f"{path} is too large to decode safely ({e}); downscale it or raise SAMKIT_MAX_PIXELS"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(f"{path} is not an image file PIL can read (PNG, JPEG, ...)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path} is corrupt or truncated: {e}") from None


def _pil_to_rgb(img: Image.Image, name: str) -> np.ndarray:
    img = ImageOps.exif_transpose(img)
    if img.width == 0 or img.height == 0:
        raise ImageError(f"{name} has zero size ({img.width}x{img.height})")
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _array_to_rgb(np.asarray(img), name)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
    return np.ascontiguousarray(np.asarray(img.convert("RGB")))


def _array_to_rgb(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.size == 0:
        raise ImageError(f"{name} is empty (shape {arr.shape})")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ImageError(
            f"{name} has shape {arr.shape}; expected H x W (gray), H x W x 3 (RGB) "
            "or H x W x 4 (RGBA)"
        )
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() > 65535:
            raise ImageError(f"{name} has integer values outside 0..65535; convert it to uint8")
        scale = 255.0 / 65535.0 if arr.max() > 255 else 1.0
        arr = np.round(arr * scale).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError(f"{name} contains NaN or infinite values")
        if arr.min() < 0 or arr.max() > 255:
            raise ImageError(f"{name} has float values outside 0..255; rescale it")
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        arr = np.round(arr * scale).astype(np.uint8)
    else:
        raise ImageError(f"{name} has unsupported dtype {arr.dtype}; use uint8 RGB")
    return np.ascontiguousarray(arr)
