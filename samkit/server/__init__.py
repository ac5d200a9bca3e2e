"""``samkit serve``: the HTTP API and the web page for interactive segmentation.

``create_app`` and ``serve`` are imported on first use, so ``samkit.server.limits`` (which the
CLI reads for its defaults) does not pull in FastAPI."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from samkit.server import app

        return getattr(app, name)
    raise AttributeError(f"module 'samkit.server' has no attribute '{name}'")
