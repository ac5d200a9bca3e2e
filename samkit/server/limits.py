"""Refuse request bodies over a size limit before they are read: by Content-Length when the
client sends one, and by counting bytes as they stream in (chunked uploads, lying headers)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

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
