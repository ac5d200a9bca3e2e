"""The public API of DESIGN.md: every name in ``samkit.__all__`` resolves, lazily where heavy."""

from __future__ import annotations

import subprocess
import sys

import samkit


def test_every_public_name_resolves_and_errors_share_one_base() -> None:
    for name in samkit.__all__:
        assert getattr(samkit, name) is not None, name
    for name in ("ImageError", "PromptError", "ConfigError", "StateError", "CheckpointError"):
        assert issubclass(getattr(samkit, name), samkit.SamkitError)
    assert set(samkit.__all__) <= set(dir(samkit))


def test_importing_samkit_does_not_load_the_generator_or_persam() -> None:
    code = (
        "import sys, samkit; "
        "print('samkit.automatic' in sys.modules, 'samkit.persam' in sys.modules); "
        "samkit.PerSAM; print('samkit.persam' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "True"]
