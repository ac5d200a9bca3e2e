"""The Ray engine: the same outputs as the local engine, on a real local Ray."""

from __future__ import annotations

import json
import sys

import pytest
import ray  # the ray extra; `make test` installs it (samkit[all])
import test_engine
from test_engine import AMG, assert_same_outputs, make_collection, read_outputs

from samkit.engine import annotate
from samkit.errors import ConfigError

engine_model = test_engine.engine_model  # fixtures shared with the local engine's tests
reference_run = test_engine.reference_run


@pytest.fixture(scope="module")
def local_ray():  # type: ignore[no-untyped-def]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_engine_writes_what_the_local_engine_writes(
    tmp_path, engine_model, reference_run, local_ray
) -> None:  # type: ignore[no-untyped-def]
    images, ref_out, _, _ = reference_run
    out = tmp_path / "out"
    s = annotate(images, out, model=str(engine_model), engine="ray", workers=2, options=AMG)
    assert (s.annotated, s.failed, s.exit_code) == (4, 1, 1)
    assert_same_outputs(read_outputs(out), read_outputs(ref_out))
    failed = json.loads((out / "failed.jsonl").read_text())
    assert failed["image"] == "bad.png" and "not an image file" in failed["error"]


def test_missing_ray_gives_an_install_hint(tmp_path, engine_model, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    images = make_collection(tmp_path / "in", n=1, corrupt=False)
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'samkit\[ray\]'"):
        annotate(images, tmp_path / "out", model=str(engine_model), engine="ray")
