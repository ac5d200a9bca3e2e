"""`samkit serve`: the web app and HTTP API."""

from __future__ import annotations

import argparse

from samkit.cli.common import model_arg


def add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="web app and HTTP API for interactive segmentation",
        description="Serve the web page (/) and the HTTP API (/docs, /openapi.json): upload "
        "images, click to segment, everything mode, personalization, export.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument(
        "--data-dir",
        help="folder for uploaded images, kept across restarts (default: a new temporary folder)",
    )
    p.add_argument(
        "--cache-mb", type=float, default=512, help="embedding cache limit in MiB (default 512)"
    )
    p.add_argument(
        "--max-upload-mb", type=float, default=20, help="largest request body in MiB (default 20)"
    )
    model_arg(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from samkit.server import serve

    serve(
        args.model,
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        cache_bytes=int(args.cache_mb * 2**20),
        max_upload_bytes=int(args.max_upload_mb * 2**20),
    )
    return 0
