"""`samkit serve`: the web app and HTTP API."""

from __future__ import annotations

import argparse

from samkit.cli.common import load_model, model_arg
from samkit.server.limits import Limits


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
        "--folder",
        help="a folder of images to label, served as a project; read only: annotations are kept "
        "in --data-dir",
    )
    p.add_argument(
        "--cache-mb", type=float, default=512, help="embedding cache limit in MiB (default 512)"
    )
    p.add_argument(
        "--max-upload-mb", type=float, default=20, help="largest request body in MiB (default 20)"
    )
    d = Limits()
    g = p.add_argument_group("limits of one request (images: SAMKIT_MAX_PIXELS, default 200 MP)")
    g.add_argument(
        "--max-points",
        type=int,
        default=d.max_points,
        help=f"points in one prompt (default {d.max_points})",
    )
    g.add_argument(
        "--max-everything-mpix",
        type=float,
        default=d.max_everything_mpix,
        help="work of one everything request, in millions of mask pixels: points x masks x "
        f"crop pixels, summed over the crops (default {d.max_everything_mpix:g})",
    )
    g.add_argument(
        "--max-mask-mpix",
        type=float,
        default=d.max_mask_mpix,
        help="millions of pixels of the masks one request sends, e.g. to the COCO export "
        f"(default {d.max_mask_mpix:g})",
    )
    g.add_argument(
        "--max-store-mb",
        type=float,
        default=d.max_store_bytes / 2**20,
        help=f"total MiB of uploads kept on disk (default {d.max_store_bytes / 2**20:g})",
    )
    g.add_argument(
        "--decode-slots",
        type=int,
        default=d.decode_slots,
        help=f"uploads decoded and embedded at once (memory; default {d.decode_slots})",
    )
    g.add_argument(
        "--max-find-images",
        type=int,
        default=d.max_find_images,
        help="images one 'find this object in every image' (PerSAM) request searches "
        f"(default {d.max_find_images})",
    )
    model_arg(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from samkit.server import serve

    limits = Limits(
        max_points=args.max_points,
        max_everything_mpix=args.max_everything_mpix,
        max_mask_mpix=args.max_mask_mpix,
        max_store_bytes=int(args.max_store_mb * 2**20),
        decode_slots=args.decode_slots,
        max_find_images=args.max_find_images,
    )
    serve(
        args.model,
        model=load_model(args),
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        cache_bytes=int(args.cache_mb * 2**20),
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        limits=limits,
        folder=args.folder,
    )
    return 0
