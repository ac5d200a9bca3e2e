"""The one place that turns paths, PIL images and numpy arrays into RGB uint8 H x W x 3 arrays
(and masks into bool H x W arrays).

Handles EXIF orientation, grayscale, RGBA/LA (alpha dropped), palette, 16-bit and float images.
Files are decoded only in the formats of ``IMAGE_FORMATS`` (no PostScript through Ghostscript,
no exotic decoders), and only after their header shows at most ``max_pixels()`` pixels: default
200 megapixels, set with the environment variable ``SAMKIT_MAX_PIXELS`` (read at every call).
PIL's own limit (``Image.MAX_IMAGE_PIXELS``) is kept equal to it, so there is one limit.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from samkit.errors import ConfigError, ImageError, PixelLimitError

ImageLike = str | os.PathLike | Image.Image | np.ndarray
# The one list of file endings samkit treats as images (folders, collections, PerSAM targets),
# and the PIL decoders those files may use (JPEG includes the MPO files of phone cameras).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP")
DEFAULT_MAX_PIXELS = 200_000_000


def max_pixels() -> int:
    """The pixel limit: ``SAMKIT_MAX_PIXELS`` if set (read now, not at import), else 200 MP."""
    raw = os.environ.get("SAMKIT_MAX_PIXELS", "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(
            f"SAMKIT_MAX_PIXELS must be a positive whole number of pixels, got '{raw}'; "
            f"unset it for the default of {DEFAULT_MAX_PIXELS}"
        )
    return value


def check_image_size(width: int, height: int, name: str) -> None:
    """Raise PixelLimitError if a ``width`` x ``height`` image is over ``max_pixels()``; for
    sizes read from a header or declared by a client, before anything is allocated."""
    limit = max_pixels()
    if width * height > limit:
        raise PixelLimitError(
            f"{name} is {width}x{height} = {width * height / 1e6:.1f} megapixels, above the "
            f"limit of {limit / 1e6:g}; downscale it or raise SAMKIT_MAX_PIXELS"
        )


def check_aspect_ratio(size: tuple[int, int], long_side: int) -> None:
    """ImageError if an H x W image is too elongated for a model whose input is ``long_side``
    pixels: resizing its long side to that would leave a short side under one pixel."""
    from samkit.transforms import preprocess_shape

    h, w = size
    if min(preprocess_shape(h, w, long_side)) < 1:
        raise ImageError(
            f"the image is {w}x{h}: too elongated for this model, which resizes the long side "
            f"to {long_side} px and would leave less than one pixel across (at most "
            f"{2 * long_side}:1); crop it into shorter pieces or pad it"
        )


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


def load_mask(mask: ImageLike | bytes, size: tuple[int, int] | None = None) -> np.ndarray:
    """Return a bool H x W mask: any nonzero value (palette index, gray level or any RGB
    channel) is object. ``mask``: a path, a file's bytes (e.g. a PNG sent over HTTP), a PIL
    image or an array. If size (H, W) is given, the mask must have that size; files, bytes and
    PIL images are checked before their pixels are decoded."""
    if isinstance(mask, (str, os.PathLike, bytes)):
        src = io.BytesIO(mask) if isinstance(mask, bytes) else Path(mask)
        arr = np.asarray(ImageOps.exif_transpose(_open(src, what="mask", expect=size)))
    elif isinstance(mask, Image.Image):
        if size is not None:
            _check_mask_size((mask.height, mask.width), size)
        arr = np.asarray(mask)
    elif isinstance(mask, np.ndarray):
        arr = mask
    else:
        raise ImageError(f"cannot read a mask from a {type(mask).__name__}; pass a path or array")
    if arr.ndim == 3:
        arr = arr.any(axis=2)
    if arr.ndim != 2:
        raise ImageError(f"a mask must be H x W (or H x W x C), got shape {arr.shape}")
    if size is not None:
        _check_mask_size(arr.shape, size)
    return arr != 0


def _check_mask_size(have: tuple[int, ...], size: tuple[int, int]) -> None:
    if tuple(have) != tuple(size):
        raise ImageError(
            f"mask size {have[1]}x{have[0]} (WxH) does not match the image size "
            f"{size[1]}x{size[0]}; resize the mask to the image first"
        )


def check_pixels(path: str | os.PathLike, what: str = "image") -> None:
    """Apply ``load_image``'s checks to an image file (it exists, is an image of an allowed
    format, is within ``max_pixels()``) from its header alone, for callers that decode it with
    another library (OpenCV). Raises ImageError naming the problem; ``what`` names the file
    in messages ("image", "mask")."""
    _open(Path(path), decode=False, what=what).close()


def read_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) that ``load_image`` will return for an image file (EXIF rotation applied), from
    its header alone, after the same checks as ``check_pixels``."""
    with _open(Path(path), decode=False) as img:
        w, h = img.size
        return (w, h) if _quarter_turned(img) else (h, w)


def _quarter_turned(img: Image.Image) -> bool:
    """Whether EXIF orientation swaps width and height (orientations 5 to 8), from the header.

    PIL's PNG ``getexif`` decodes the whole image to look for an eXIf chunk after the pixels;
    a PNG's orientation is read from the chunks before them instead (the mask's size is
    checked again after decoding, so a late chunk cannot slip a wrong size through)."""
    if img.format == "PNG":
        raw = img.info.get("exif")
        if not raw:
            return False
        exif = Image.Exif()
        exif.load(raw)
        return exif.get(0x0112, 1) in (5, 6, 7, 8)
    return img.getexif().get(0x0112, 1) in (5, 6, 7, 8)


def _open(
    src: Path | io.BytesIO,
    decode: bool = True,
    what: str = "image",
    expect: tuple[int, int] | None = None,
) -> Image.Image:
    """Open an image file (or a file's bytes) of an allowed format, check its size from the
    header (the pixel limit; ``expect``: the H x W it must show after EXIF rotation), then
    decode it."""
    if isinstance(src, Path):
        _check_file(src, what)
    path = src if isinstance(src, Path) else f"the {what}"
    limit = max_pixels()
    # PIL checks its own limit inside Image.open: keep it equal to ours (one limit for every
    # PIL user in the process). Its warning (up to twice the limit) is left to our check just
    # below, which names the size; its error (beyond) is turned into ours.
    Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(src, formats=IMAGE_FORMATS)
            try:
                check_image_size(*img.size, str(path))
                if expect is not None:
                    w, h = img.size
                    _check_mask_size((w, h) if _quarter_turned(img) else (h, w), expect)
                if decode:
                    img.load()
            except BaseException:
                img.close()
                raise
            return img
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise PixelLimitError(
            f"{path} is above the limit of {limit / 1e6:g} megapixels ({e}); downscale it or "
            "raise SAMKIT_MAX_PIXELS"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{path} is not an image file samkit reads ({', '.join(IMAGE_FORMATS)})"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path} is corrupt or truncated: {e}") from None


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        if path.is_symlink():
            try:
                path.resolve(strict=True)
            except FileNotFoundError:
                raise ImageError(
                    f"{what} file {path} is a symbolic link to {os.readlink(path)}, which does "
                    "not exist"
                ) from None
            except (OSError, RuntimeError):  # ELOOP; RuntimeError before Python 3.13
                pass
            raise ImageError(
                f"{what} file {path} is a symbolic link that loops back on itself; fix or "
                "remove the link"
            )
        raise ImageError(f"{what} file not found: {path}")
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image file")
    if path.stat().st_size == 0:
        raise ImageError(f"{what} file is empty (0 bytes): {path}")


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
