"""What machine a benchmark ran on, so that figures from different machines can be compared:
CPU model, its bf16 / AMX / VNNI flags, torch's thread count and the measured GEMM throughput
(fp32 and bf16, one square matmul, best of a few runs).

    .venv/bin/python benchmarks/machine.py
"""

from __future__ import annotations

import platform
import time

import torch

FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "bf16")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    return [f for f in FLAGS if f in have]
    except OSError:
        pass
    return []


def gemm_gflops(dtype: torch.dtype, n: int = 1024, repeats: int = 5) -> float:
    """Measured n x n x n matmul throughput in GFLOP/s at torch's current thread count."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def describe(measure: bool = True) -> dict[str, object]:
    """The machine as a dict (printed by ``header``)."""
    info: dict[str, object] = {
        "cpu": cpu_model(),
        "flags": cpu_flags(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    if measure:
        info["gemm_fp32_gflops"] = round(gemm_gflops(torch.float32), 1)
        info["gemm_bf16_gflops"] = round(gemm_gflops(torch.bfloat16), 1)
    return info


def header(measure: bool = True) -> str:
    """A markdown-ready paragraph about the machine, for the top of a benchmark's output."""
    d = describe(measure)
    flags = ", ".join(d["flags"]) or "none of " + ", ".join(FLAGS)  # type: ignore[arg-type]
    parts = [
        f"CPU: {d['cpu']}; flags: {flags}",
        f"torch {d['torch']}, {d['threads']} thread(s)",
    ]
    if "gemm_fp32_gflops" in d:
        parts.append(
            f"measured GEMM: fp32 {d['gemm_fp32_gflops']} GFLOP/s, "
            f"bf16 {d['gemm_bf16_gflops']} GFLOP/s"
        )
    if "gpu" in d:
        parts.append(f"GPU: {d['gpu']}")
    return "; ".join(parts)


if __name__ == "__main__":
    for threads in (1, torch.get_num_threads()):
        torch.set_num_threads(threads)
        print(header())
