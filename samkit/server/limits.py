"""The server's limits: request bodies over a size limit are refused before they are read (by
Content-Length when the client sends one, and by counting bytes as they stream in: chunked
uploads, lying headers); ``Limits`` bounds what one request may ask, and the checks below
run before any work starts."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from samkit.errors import ConfigError, LimitError

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyTooLarge(Exception):
    """Raised inside the app when the streamed body passes the limit."""


class BodyLimit:
    """ASGI middleware: 413 with a JSON ``detail`` for bodies over ``max_bytes``."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self, size: str) -> bytes:
        mb = self.max_bytes / 2**20
        return json.dumps(
            {
                "detail": f"request body {size} is over the server's limit of {mb:g} MiB; "
                "send a smaller image (or start the server with a larger --max-upload-mb)"
            }
        ).encode()

    async def _refuse(self, send: Send, size: str) -> None:
        body = self._message(size)
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send, f"of {int(length)} bytes")
            return
        seen = 0
        over = False
        started = False

        async def counted() -> Message:
            nonlocal seen, over
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    raise BodyTooLarge
            return msg

        async def guarded(msg: Message) -> None:
            # The app may turn our exception into its own error response: replace it.
            nonlocal started
            if over:
                if msg["type"] == "http.response.start" and not started:
                    started = True
                    await self._refuse(send, f"of more than {self.max_bytes} bytes")
                return
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, counted, guarded)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, f"of more than {self.max_bytes} bytes")


# -- what one request may ask ---------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server (each is a ``samkit serve`` option; the pixel
    limit of images is ``SAMKIT_MAX_PIXELS``, see ``samkit.image_io``).

    max_points: points in one prompt (--max-points).
    max_everything_mpix: worst-case work of one everything request in millions of mask pixels,
      points x masks per point x crop pixels summed over the crops (--max-everything-mpix).
    max_mask_mpix: millions of pixels of the masks one request sends (export, references,
      mask prompts), each mask being the size of its image (--max-mask-mpix).
    max_store_bytes: total bytes of the uploads kept on disk (--max-store-mb).
    decode_slots: uploads decoded and embedded at once; each holds a full-size image in
      memory (--decode-slots).
    max_find_images: images one "find this object in every image" request searches, each an
      encoder pass if its embedding is not cached (--max-find-images).
    """

    max_points: int = 100
    max_everything_mpix: float = 2_000
    max_mask_mpix: float = 1_000
    max_store_bytes: int = 2 * 2**30
    decode_slots: int = 2
    max_find_images: int = 64

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not value > 0:
                raise ConfigError(f"server limit {name} must be > 0, got {value}")


def everything_work(generator: Any, size: tuple[int, int], masks_per_point: int) -> int:
    """Upper bound of the mask pixels a ``MaskGenerator`` computes on an H x W image: every
    point of every crop's grid gives ``masks_per_point`` masks at the crop's resolution (the
    IoU filter may drop some before upsampling; a client can turn it off)."""
    from samkit.automatic.mask_ops import generate_crop_boxes

    boxes, layers = generate_crop_boxes(size, generator.crop_n_layers, generator.crop_overlap_ratio)
    return sum(
        len(generator.point_grids[layer]) * masks_per_point * (x1 - x0) * (y1 - y0)
        for (x0, y0, x1, y1), layer in zip(boxes, layers)
    )


def check_everything(
    generator: Any, size: tuple[int, int], masks_per_point: int, limits: Limits
) -> None:
    """LimitError, naming the options to lower (with the grid that fits) and the option to
    raise, if an everything run on an H x W image could compute more than
    ``limits.max_everything_mpix`` million mask pixels."""
    work = everything_work(generator, size, masks_per_point)
    limit = limits.max_everything_mpix * 1e6
    if work <= limit:
        return
    h, w = size
    # Work grows with the square of points_per_side (every layer has the same grid here).
    side = math.isqrt(len(generator.point_grids[0]))
    fits = math.isqrt(int(limit / (work / side**2)))
    hint = f"at most {fits} fits" if fits >= 1 else "none fits"
    raise LimitError(
        f"everything mode on this {w}x{h} image with these options computes up to "
        f"{work / 1e6:,.0f} million mask pixels (points x {masks_per_point} masks x crop "
        f"pixels), over this server's limit of {limit / 1e6:,.0f}; lower points_per_side "
        f"({hint} with these crop layers) or crop_n_layers, send a smaller image, or start "
        "the server with a larger --max-everything-mpix"
    )


def check_points(n: int, limits: Limits) -> None:
    """LimitError if one prompt has more than ``limits.max_points`` points."""
    if n > limits.max_points:
        raise LimitError(
            f"{n} points in one prompt; this server takes at most {limits.max_points} "
            "(start it with a larger --max-points)"
        )


def check_mask_pixels(n_masks: int, total_pixels: int, limits: Limits) -> None:
    """LimitError if a request's client masks add up to more than ``limits.max_mask_mpix``
    million pixels (each mask has its image's size)."""
    if total_pixels > limits.max_mask_mpix * 1e6:
        raise LimitError(
            f"this request sends {n_masks} masks of {total_pixels / 1e6:,.0f} million pixels "
            f"in all, over this server's limit of {limits.max_mask_mpix:,.0f}; send fewer "
            "masks per request or start the server with a larger --max-mask-mpix"
        )


def check_find_images(n: int, limits: Limits) -> None:
    """LimitError if one PerSAM search covers more than ``limits.max_find_images`` images."""
    if n > limits.max_find_images:
        raise LimitError(
            f"this search covers {n} images; this server searches at most "
            f"{limits.max_find_images} per request: pass image_ids in batches, or start it "
            "with a larger --max-find-images"
        )
