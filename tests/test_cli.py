"""The `samkit` command line: help everywhere, useful output, exit codes people understand."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import synthetic_image
from PIL import Image

from samkit.checkpoints import save_safetensors
from samkit.cli import build_parser, main


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, twins):  # type: ignore[no-untyped-def]
    p = tmp_path_factory.mktemp("m") / "small.safetensors"
    save_safetensors(twins[1], p)
    return p


@pytest.fixture()
def image_file(tmp_path):  # type: ignore[no-untyped-def]
    p = tmp_path / "img.png"
    Image.fromarray(synthetic_image(150, 220, seed=11)).save(p)
    return p


def test_every_command_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():  # type: ignore[union-attr]
        assert p.format_help().strip(), name


def test_segment_writes_mask_overlay_and_json(tmp_path, image_file, model_file, capsys) -> None:  # type: ignore[no-untyped-def]
    out, over = tmp_path / "m.png", tmp_path / "o.png"
    rc = main(
        [
            "segment",
            str(image_file),
            "--point",
            "100,70",
            "--point",
            "20,20,0",
            "--box",
            "50,30,180,120",
            "--model",
            str(model_file),
            "-o",
            str(out),
            "--overlay",
            str(over),
            "--json",
        ]
    )
    assert rc == 0
    info = json.loads(capsys.readouterr().out)
    mask = np.asarray(Image.open(out))
    assert mask.shape == (150, 220) and set(np.unique(mask)) <= {0, 255}
    assert info["area"] == int((mask == 255).sum())
    assert Image.open(over).size == (220, 150)


def test_bad_input_exits_2_with_a_message(image_file, model_file, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["segment", str(image_file), "--model", str(model_file)]) == 2
    assert "give at least one --point" in capsys.readouterr().err
    assert main(["segment", str(image_file), "--point", "999,5", "--model", str(model_file)]) == 2
    assert "outside the 220x150 image" in capsys.readouterr().err
    assert main(["segment", "missing.png", "--point", "1,1", "--model", str(model_file)]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["segment", str(image_file), "--point", "1,1", "--model", "vit_zz"]) == 2
    assert "neither a model name" in capsys.readouterr().err


def test_malformed_point_is_an_argument_error(image_file) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as e:
        main(["segment", str(image_file), "--point", "ten,20"])
    assert e.value.code == 2


def test_models_lists_the_zoo(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("vit_b", "vit_l", "vit_h", "hq_vit_b", "samkit-tiny"):
        assert name in out


def test_console_script_runs() -> None:
    r = subprocess.run([sys.executable, "-m", "samkit", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "segment" in r.stdout
