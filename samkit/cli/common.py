"""What every command shares: the model options, the one model loader, click and box parsers."""

from __future__ import annotations

import argparse

DEFAULT_MODEL = "samkit-tiny"


def model_arg(p: argparse.ArgumentParser) -> None:
    """Add ``--model NAME|PATH``."""
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"zoo name (see `samkit models`) or a .pth/.safetensors path "
        f"(default {DEFAULT_MODEL})",
    )


def load_model(name: str):  # type: ignore[no-untyped-def]
    """The CLI's one way to get a model: the zoo/path loader."""
    import samkit

    return samkit.load(name)


def parse_point(s: str) -> tuple[float, float, int]:
    parts = s.split(",")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"'{s}' is not X,Y or X,Y,LABEL (e.g. 120,80 or 120,80,0)")
    try:
        x, y = float(parts[0]), float(parts[1])
        label = int(parts[2]) if len(parts) == 3 else 1
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{s}' is not X,Y or X,Y,LABEL with numbers") from None
    return x, y, label


def parse_box(s: str) -> tuple[float, float, float, float]:
    try:
        vals = [float(v) for v in s.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{s}' is not X0,Y0,X1,Y1 with numbers") from None
    if len(vals) != 4:
        raise argparse.ArgumentTypeError(f"'{s}' is not X0,Y0,X1,Y1 (four numbers)")
    return vals[0], vals[1], vals[2], vals[3]
