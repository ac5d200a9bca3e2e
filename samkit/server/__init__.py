"""``samkit serve``: the HTTP API and the web page for interactive segmentation."""

from samkit.server.app import create_app, serve

__all__ = ["create_app", "serve"]
