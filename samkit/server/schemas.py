"""Request and response bodies of the HTTP API, and how masks travel: a base64 PNG (0 / 255)
or a COCO RLE (``{"size": [h, w], "counts": str}``, the SA-1B encoding)."""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from samkit.errors import ImageError
from samkit.image_io import load_mask
from samkit.masks import decode_rle, encode_rle

MaskFormat = Literal["png", "rle", "both"]


class MaskIn(BaseModel):
    """A mask sent by the client: exactly one of ``png`` (base64) or ``rle`` (COCO RLE)."""

    png: str | None = Field(None, description="base64 PNG; nonzero = object")
    rle: dict[str, Any] | None = Field(None, description='COCO RLE {"size": [h, w], "counts"}')


class Prompt(BaseModel):
    points: list[tuple[float, float]] = Field([], description="N clicks (x, y) in image pixels")
    labels: list[int] = Field([], description="N labels: 1 = object, 0 = background")
    box: tuple[float, float, float, float] | None = Field(None, description="x0, y0, x1, y1")
    mask: MaskIn | None = Field(None, description="a rough mask of the object, as a prompt")
    multimask: bool = Field(True, description="three candidates (True) or one")
    format: MaskFormat = "png"


class MaskOut(BaseModel):
    score: float
    area: int
    png: str | None = None
    rle: dict[str, Any] | None = None


class PredictOut(BaseModel):
    width: int
    height: int
    best: int = Field(description="index of the candidate with the highest score")
    masks: list[MaskOut]
    decode_ms: float


class ImageOut(BaseModel):
    id: str
    width: int
    height: int
    embed_ms: float | None = None


class EverythingIn(BaseModel):
    """A bounded subset of ``MaskGenerator``'s options (so one request cannot run for hours)."""

    points_per_side: int = Field(16, ge=2, le=64)
    pred_iou_thresh: float = Field(0.88, ge=0.0, le=1.0)
    stability_score_thresh: float = Field(0.95, ge=0.0, le=1.0)
    box_nms_thresh: float = Field(0.7, ge=0.0, le=1.0)
    crop_n_layers: int = Field(0, ge=0, le=1)
    min_mask_region_area: int = Field(0, ge=0, le=100_000)


class ReferenceIn(BaseModel):
    image_id: str
    mask: MaskIn


class ApplyIn(BaseModel):
    image_id: str
    format: MaskFormat = "png"


class ApplyOut(BaseModel):
    mask: MaskOut
    points: list[tuple[float, float]]
    labels: list[int]


class ExportItem(BaseModel):
    image_id: str
    masks: list[MaskIn]
    scores: list[float] | None = None


class ExportIn(BaseModel):
    items: list[ExportItem]


# -- mask codec -------------------------------------------------------------------------------


def png_bytes(mask: np.ndarray) -> bytes:
    """bool H x W -> 8-bit gray PNG bytes (255 = object)."""
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def mask_out(mask: np.ndarray, score: float, fmt: MaskFormat) -> MaskOut:
    out = MaskOut(score=float(score), area=int(mask.sum()))
    if fmt in ("png", "both"):
        out.png = base64.b64encode(png_bytes(mask)).decode()
    if fmt in ("rle", "both"):
        out.rle = encode_rle(mask)[0]
    return out


def mask_in(m: MaskIn, size: tuple[int, int]) -> np.ndarray:
    """A client's mask as bool H x W of the image's size (ImageError with the reason if not)."""
    if (m.png is None) == (m.rle is None):
        raise ImageError("give a mask as exactly one of 'png' (base64) or 'rle' (COCO RLE)")
    if m.rle is not None:
        try:
            arr = decode_rle(m.rle)
        except Exception as e:  # pycocotools raises bare TypeErrors/ValueErrors
            raise ImageError(f"the mask RLE cannot be decoded ({e}); expected COCO RLE") from None
        return load_mask(arr, size)
    try:
        data = base64.b64decode(m.png or "", validate=True)
        pic = Image.open(io.BytesIO(data))
        pic.load()
    except (binascii.Error, OSError, ValueError):
        raise ImageError("the mask 'png' is not a base64-encoded PNG image") from None
    return load_mask(pic, size)
