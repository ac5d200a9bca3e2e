"""Device and precision resolution: 'auto' is detected, unknown or missing devices are refused
with a message that names the fix."""

from __future__ import annotations

import pytest
import torch

from samkit import runtime
from samkit.errors import ConfigError


def test_auto_device_is_the_cpu_on_a_machine_without_gpus(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "_mps_available", lambda: False)
    assert runtime.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="no CUDA GPU is visible; use cpu"):
        runtime.resolve_device("cuda:0")
    with pytest.raises(ConfigError, match="Apple silicon"):
        runtime.resolve_device("mps")
    with pytest.raises(ConfigError, match="choose one of auto, cpu"):
        runtime.resolve_device("tpu")


@pytest.mark.parametrize(
    ("flags", "want"),
    [(("avx512_bf16",), torch.bfloat16), (("amx_bf16",), torch.bfloat16), ((), torch.float32)],
)
def test_auto_precision_on_the_cpu_follows_its_bf16_units(monkeypatch, flags, want) -> None:
    monkeypatch.setattr(runtime, "cpu_bf16_flags", lambda: flags)
    rt = runtime.resolve("cpu", "auto")
    assert rt.dtype == want
    assert ("CPU has" in rt.why) == bool(flags)
    assert rt.describe().startswith("cpu, ")


def test_explicit_precisions_and_their_errors() -> None:
    assert runtime.resolve("cpu", "fp32").dtype == torch.float32
    assert runtime.resolve("cpu", "BF16").dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="fp16 is not supported on the CPU"):
        runtime.resolve("cpu", "fp16")
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        runtime.resolve("cpu", "fp8")


def test_cpu_flags_are_read_from_proc_cpuinfo() -> None:
    flags = runtime.cpu_bf16_flags()
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        assert flags == ()
        return
    for f in flags:
        assert f" {f}" in text
