"""What every command shares: the model options, the one model loader, click and box parsers,
and the checks of output paths made before any model runs."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from samkit.errors import ConfigError

DEFAULT_MODEL = "samkit-tiny"


def model_arg(p: argparse.ArgumentParser, precision: str = "auto") -> None:
    """Add ``--model NAME|PATH``, ``--device``, ``--precision`` and ``--threads``.
    ``precision``: the default (evaluations and training use fp32 so their numbers compare
    across machines; the rest takes "auto", the fastest the hardware runs well)."""
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"zoo name (see `samkit models`) or a .pth/.safetensors path "
        f"(default {DEFAULT_MODEL})",
    )
    p.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA, else Apple MPS, else CPU), cpu, cuda, cuda:N or mps (default auto)",
    )
    p.add_argument(
        "--precision",
        default=precision,
        choices=("auto", "fp32", "bf16", "fp16"),
        help="auto: bf16 on GPUs and on CPUs with bf16 units, else fp32 (default "
        f"{precision}); applies to the image encoder, outputs stay float32",
    )
    p.add_argument(
        "--threads", type=int, help="CPU threads for torch (default: torch's, one per core)"
    )


def load_model(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The CLI's one way to get a model: the zoo/path loader on the chosen device and
    precision, saying on stderr what "auto" chose."""
    import sys

    import samkit
    from samkit.runtime import resolve, set_threads

    set_threads(args.threads)
    rt = resolve(args.device, args.precision)
    print(f"samkit: {args.model} on {rt.describe()}", file=sys.stderr)
    return samkit.load(args.model, device=str(rt.device), precision=rt.precision)


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


# -- output paths: checked before any model runs --------------------------------------------


def check_output_file(path: str | os.PathLike, suffixes: Sequence[str], what: str) -> Path:
    """The output file ``path`` if it can be written: its name ends in one of ``suffixes``,
    its folder exists and this process can create files there. ConfigError otherwise."""
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise ConfigError(
            f"cannot write the {what} to '{p}': give a file name ending in {' or '.join(suffixes)}"
        )
    if p.is_dir():
        raise ConfigError(f"cannot write the {what} to '{p}': it is a folder; give a file name")
    folder = p.parent
    if not folder.is_dir():
        raise ConfigError(
            f"cannot write the {what} to '{p}': the folder '{folder}' does not exist; create it "
            "first or choose another path"
        )
    _check_writable(folder, f"the {what} to '{p}'")
    return p


def check_output_dir(path: str | os.PathLike) -> Path:
    """The output folder ``path`` if it is (or can be created as) a folder this process can
    write in. ConfigError otherwise."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"the output folder '{p}' exists and is not a folder; choose another")
    existing = p
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"cannot create the output folder '{p}': '{existing}' is not a folder")
    _check_writable(existing, f"into '{p}'")
    return p


def _check_writable(folder: Path, what: str) -> None:
    # A real write, not os.access: that one says yes to root even on read-only folders.
    try:
        fd, probe = tempfile.mkstemp(prefix=".samkit-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(
            f"cannot write {what}: the folder '{folder}' is not writable ({e.strerror}); "
            "choose another path"
        ) from None
