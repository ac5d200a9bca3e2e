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


def test_every_model_command_takes_device_precision_and_threads() -> None:
    from samkit.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    commands = ["segment", "everything", "personalize", "annotate", "serve", "export-onnx"]
    for name in commands:
        opts = {o for a in sub.choices[name]._actions for o in a.option_strings}
        assert {"--model", "--device", "--precision", "--threads"} <= opts, name
    for name in ("train", "train-hq"):
        opts = {o for a in sub.choices[name]._actions for o in a.option_strings}
        assert {"--device", "--precision", "--threads"} <= opts, name


def test_cli_says_which_device_and_precision_it_chose_and_refuses_a_missing_gpu(
    tmp_path, capsys, monkeypatch
) -> None:
    import numpy as np
    from PIL import Image

    from samkit.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(img)
    code = main(["segment", str(img), "--point", "30,20", "-o", str(tmp_path / "m.png"),
                 "--device", "cuda"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no CUDA GPU is visible; use cpu" in err[0]
    code = main(["segment", str(img), "--point", "30,20", "-o", str(tmp_path / "m.png"),
                 "--device", "cpu", "--precision", "fp32", "--threads", "1"])  # fmt: skip
    assert code == 0
    assert "samkit: samkit-tiny on cpu, fp32" in capsys.readouterr().err
