"""Request and response bodies of the HTTP API, and how masks travel: a base64 PNG (0 / 255)
or a COCO RLE (``{"size": [h, w], "counts": str}``, the SA-1B encoding). Request bodies refuse
NaN and infinity; a client's mask is checked against its image's size before it is decoded."""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from samkit.errors import ImageError
from samkit.image_io import load_mask
from samkit.masks import decode_rle, encode_rle

MaskFormat = Literal["png", "rle", "both"]


class Body(BaseModel):
    """A request body: every number finite (NaN and infinity are refused with 422)."""

    model_config = ConfigDict(allow_inf_nan=False)


class MaskIn(Body):
    """A mask sent by the client: exactly one of ``png`` (base64) or ``rle`` (COCO RLE)."""

    png: str | None = Field(None, description="base64 PNG; nonzero = object")
    rle: dict[str, Any] | None = Field(None, description='COCO RLE {"size": [h, w], "counts"}')


class Prompt(Body):
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


class EverythingIn(Body):
    """A bounded subset of ``MaskGenerator``'s options (so one request cannot run for hours)."""

    points_per_side: int = Field(16, ge=2, le=64)
    pred_iou_thresh: float = Field(0.88, ge=0.0, le=1.0)
    stability_score_thresh: float = Field(0.95, ge=0.0, le=1.0)
    box_nms_thresh: float = Field(0.7, ge=0.0, le=1.0)
    crop_n_layers: int = Field(0, ge=0, le=1)
    min_mask_region_area: int = Field(0, ge=0, le=100_000)


class ReferenceIn(Body):
    image_id: str
    mask: MaskIn


class ApplyIn(Body):
    image_id: str
    format: MaskFormat = "png"


class ApplyOut(BaseModel):
    mask: MaskOut
    points: list[tuple[float, float]]
    labels: list[int]


class ExportItem(Body):
    image_id: str
    masks: list[MaskIn]
    scores: list[float] | None = None


class ExportIn(Body):
    items: list[ExportItem]


Name = Field(min_length=1, max_length=200)
Category = Field(min_length=1, max_length=100)


class ProjectIn(Body):
    name: str = Name
    categories: list[str] = Field([], max_length=1000, description="category labels, in order")


class ProjectPatch(Body):
    name: str | None = Field(None, min_length=1, max_length=200)
    categories: list[str] | None = Field(None, max_length=1000)


class ImagePatch(Body):
    done: bool = Field(description="the image is fully labelled")


class ObjectIn(Body):
    category: str = Category
    mask: MaskIn
    score: float | None = Field(None, description="predicted IoU of the mask, if any")


class ObjectPatch(Body):
    category: str | None = Field(None, min_length=1, max_length=100)
    mask: MaskIn | None = None
    score: float | None = None


class FindIn(Body):
    image_id: str = Field(description="the image the reference object is on")
    mask: MaskIn = Field(description="the reference object's mask")
    image_ids: list[str] | None = Field(
        None, description="where to look (default: every other image of the project)"
    )


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
    """A client's mask as bool H x W of the image's size (ImageError with the reason if not).
    The size it declares (RLE ``size``, PNG header) is checked before anything is decoded."""
    if (m.png is None) == (m.rle is None):
        raise ImageError("give a mask as exactly one of 'png' (base64) or 'rle' (COCO RLE)")
    h, w = size
    if m.rle is not None:
        rle_size, counts = m.rle.get("size"), m.rle.get("counts")
        ints = isinstance(rle_size, list) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in rle_size
        )
        if not ints or len(rle_size) != 2 or not isinstance(counts, (str, list)):
            raise ImageError(
                'the mask RLE must be {"size": [h, w], "counts": str or list of run lengths}'
            )
        if rle_size != [h, w]:
            raise ImageError(
                f"the mask RLE is {rle_size[1]}x{rle_size[0]} (WxH) but the image is {w}x{h}; "
                "send a mask of the image's size"
            )
        if isinstance(counts, list) and (
            not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != h * w
        ):
            raise ImageError(
                f"the mask RLE's counts must be run lengths >= 0 adding up to h * w = {h * w}"
            )
        try:
            arr = decode_rle(m.rle)
        except Exception as e:  # pycocotools raises bare TypeErrors/ValueErrors
            raise ImageError(f"the mask RLE cannot be decoded ({e}); expected COCO RLE") from None
        return load_mask(arr, size)
    try:
        data = base64.b64decode(m.png or "", validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("the mask 'png' is not base64 (RFC 4648, no line breaks)") from None
    return load_mask(data, size)  # its size is checked from the header, before decoding
