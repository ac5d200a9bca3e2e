"""Image-encoder speed of TinyViT (MobileSAM's vit_t): samkit against the official MobileSAM code
on the same random weights, and against samkit's vit_b, at 1 and 2 threads, in one run.

    .venv/bin/python benchmarks/bench_tinyvit.py [--repeats 3] [--threads 1 2] [--bf16] [--mallopt]

Each row times one 1024 x 1024 image through the image encoder (normalised input, so resizing
and normalisation are left out; the same for all models), alternating the models so that drift
on a shared machine affects them alike; medians of --repeats. --bf16 adds samkit vit_t under
bf16 autocast. --mallopt asks glibc to keep freed memory for reuse instead of returning it to
the kernel: on VMs where page faults are expensive, a fresh 64 MB feature map costs more than
the arithmetic done on it, for every model alike.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "sve")


def cpu_description() -> str:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() in ("flags", "Features"):
                flags = set(value.split())
    except OSError:
        pass
    have = [f for f in FLAGS if f in flags] or ["(flags not readable)"]
    return f"{model}, {os.cpu_count()} logical CPUs; {' '.join(have)}"


def keep_freed_memory() -> None:
    """glibc: no mmap for big blocks and no trimming, so freed feature maps are reused."""
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 1 << 62)


def models(bf16: bool) -> dict[str, Callable[[torch.Tensor], object]]:
    """Encoders by row name; MobileSAM's two share the same random weights."""
    from test_parity_tinyvit import random_tiny_vit_state

    from samkit.models import build_sam
    from samkit.models.tiny_vit import build_tiny_vit_encoder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mobile_sam

        official = mobile_sam.sam_model_registry["vit_t"]().image_encoder
    ours = build_tiny_vit_encoder()
    state = random_tiny_vit_state(official, seed=0)
    official.load_state_dict(state)
    ours.load_state_dict(state)
    official.eval()  # the official attention gathers its bias table here
    ours.eval()
    vit_b = build_sam("vit_b").image_encoder.eval()
    x = torch.randn(1, 3, 1024, 1024)
    with torch.inference_mode():
        diff = (official(x) - ours(x)).abs().max().item()
    print(f"samkit vit_t vs official MobileSAM encoder on the same weights: max |diff| {diff:.1e}")

    def bf16_encoder(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return ours(x)

    rows = {
        "official MobileSAM (vit_t)": official,
        "samkit vit_t": ours,
        "samkit vit_b": vit_b,
    }
    if bf16:
        rows["samkit vit_t, bf16 autocast"] = bf16_encoder
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--bf16", action="store_true", help="add samkit vit_t under bf16 autocast")
    ap.add_argument("--mallopt", action="store_true", help="keep freed memory for reuse (glibc)")
    args = ap.parse_args()
    if args.mallopt:
        keep_freed_memory()
    print(f"CPU: {cpu_description()}")
    allocator = "glibc, freed memory kept (--mallopt)" if args.mallopt else "default"
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}; load average {load:.1f} at start; allocator: {allocator}")
    encoders = models(args.bf16)
    x = torch.randn(1, 3, 1024, 1024)
    table: dict[tuple[str, int], float] = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        times: dict[str, list[float]] = {name: [] for name in encoders}
        with torch.inference_mode():
            for enc in encoders.values():  # warm-up: first-call allocations, bias tables
                enc(x)
            for _ in range(args.repeats):
                for name, enc in encoders.items():
                    t = time.perf_counter()
                    enc(x)
                    times[name].append(time.perf_counter() - t)
        for name, ts in times.items():
            table[name, threads] = statistics.median(ts)
    ref = "samkit vit_t"
    head = "| encoder, 1024 px |" + "".join(f" {t} thread{'s' * (t > 1)} |" for t in args.threads)
    print()
    print(head + " vs samkit vit_t |")
    print("|---|" + "---:|" * (len(args.threads) + 1))
    for name in encoders:
        cells = "".join(f" {table[name, t]:.2f} s |" for t in args.threads)
        ratios = ", ".join(f"{table[name, t] / table[ref, t]:.2f}x" for t in args.threads)
        print(f"| {name} |{cells} {ratios} |")


if __name__ == "__main__":
    main()
