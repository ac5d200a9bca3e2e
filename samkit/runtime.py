"""Device and precision: what "auto" means, detected on this machine rather than assumed.

- device "auto": CUDA if present, else Apple's MPS, else the CPU.
- precision "auto": bf16 on CUDA GPUs that support it (fp16 on older ones and on MPS), bf16 on
  CPUs with bf16 units (AVX-512 BF16 or AMX), fp32 elsewhere — on CPUs without them bf16 is
  emulated and several times slower than fp32.

Reduced precision applies to the image encoder (autocast; where nearly all the arithmetic is);
prompt encoding, mask decoding and everything users get back stay float32.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch

from samkit.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Runtime:
    """Where a model runs and in what precision; ``why`` says how "auto" decided."""

    device: torch.device
    dtype: torch.dtype
    why: str = ""

    @property
    def precision(self) -> str:
        return next(k for k, v in PRECISIONS.items() if v == self.dtype)

    def describe(self) -> str:
        """One line for people: 'cpu, bf16 (CPU has avx512_bf16)'."""
        return f"{self.device}, {self.precision}" + (f" ({self.why})" if self.why else "")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' | 'mps' -> a device that exists on this machine."""
    if isinstance(device, torch.device):
        device = str(device)
    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise ConfigError("device 'mps' is not available here (Apple silicon only); use cpu")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{name}' asked for, but no CUDA GPU is visible; use cpu")
        idx = name.partition(":")[2]
        if idx and (not idx.isdigit() or int(idx) >= torch.cuda.device_count()):
            n = torch.cuda.device_count()
            raise ConfigError(f"device '{name}' does not exist: this machine has cuda:0..{n - 1}")
        return torch.device(name)
    raise ConfigError(f"unknown device '{device}'; choose one of {', '.join(DEVICES)}")


def resolve(device: str | torch.device = "auto", precision: str = "fp32") -> Runtime:
    """Device and precision names (see the module docstring) -> a ``Runtime``."""
    dev = resolve_device(device)
    name = str(precision).strip().lower()
    if name == "auto":
        dtype, why = _auto_dtype(dev)
        return Runtime(dev, dtype, why)
    if name not in PRECISIONS:
        raise ConfigError(
            f"unknown precision '{precision}'; choose one of auto, {', '.join(PRECISIONS)}"
        )
    dtype = PRECISIONS[name]
    if dev.type == "cpu" and dtype == torch.float16:
        raise ConfigError(
            "precision fp16 is not supported on the CPU (no fp16 arithmetic units); "
            "use bf16 (fast where the CPU has bf16 units) or fp32"
        )
    return Runtime(dev, dtype)


def _auto_dtype(dev: torch.device) -> tuple[torch.dtype, str]:
    if dev.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "GPU supports bf16"
        return torch.float16, "GPU without bf16"
    if dev.type == "mps":
        return torch.float16, "Apple GPU"
    flags = cpu_bf16_flags()
    if flags:
        return torch.bfloat16, f"CPU has {', '.join(flags)}"
    return torch.float32, "CPU without bf16 units"


@functools.cache
def cpu_bf16_flags() -> tuple[str, ...]:
    """The CPU's bf16 arithmetic features (x86: avx512_bf16, amx_bf16; Arm: bf16), from
    /proc/cpuinfo; empty where there are none or the file is missing (then: not assumed)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    return tuple(f for f in ("avx512_bf16", "amx_bf16", "bf16") if f in have)
    except OSError:
        pass
    return ()


def set_threads(threads: int | None) -> None:
    """Use this many CPU threads for torch (None: leave torch's default)."""
    if threads is None:
        return
    if threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())
