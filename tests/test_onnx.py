"""ONNX export: onnxruntime gives the PyTorch path's outputs (max abs diff <= 1e-3)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import synthetic_image
from official import random_state_dict

from samkit.export.onnx import OnnxPredictor, export_onnx
from samkit.models import build_sam
from samkit.predictor import Predictor

TOL = 1e-3


@pytest.fixture(scope="module")
def both(tmp_path_factory, small_cfg):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    model = build_sam(replace(small_cfg, image_size=256, window_size=8))
    model.load_state_dict(random_state_dict(model, seed=3))
    d = tmp_path_factory.mktemp("onnx")
    export_onnx(model, d)
    image = synthetic_image(240, 360, seed=21)
    ort, pt = OnnxPredictor(d), Predictor(model)
    ort.set_image(image)
    pt.set_image(image)
    return ort, pt


def test_encoder_matches_pytorch(both) -> None:  # type: ignore[no-untyped-def]
    ort, pt = both
    assert np.abs(ort.embedding - pt.embedding.features.embeddings.numpy()).max() <= TOL


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize(
    "prompt",
    [
        dict(points=[[100, 120]], labels=[1]),
        dict(points=[[100, 120], [300, 40]], labels=[1, 0]),
        dict(box=[40, 30, 250, 200]),
        dict(points=[[100, 120]], labels=[1], box=[40, 30, 250, 200]),
    ],
    ids=["point", "points", "box", "box_and_point"],
)
def test_decoder_matches_pytorch(both, prompt, multimask) -> None:  # type: ignore[no-untyped-def]
    ort, pt = both
    a = ort.predict(**prompt, multimask=multimask)
    b = pt.predict(**prompt, multimask=multimask)
    assert np.abs(a.logits - b.logits).max() <= TOL
    assert np.abs(a.scores - b.scores).max() <= TOL
    assert (a.masks == b.masks).mean() >= 0.999


def test_mask_input_matches_pytorch(both) -> None:  # type: ignore[no-untyped-def]
    ort, pt = both
    first = pt.predict([[100, 120]], [1])
    mi = first.logits[[int(first.scores.argmax())]]
    a = ort.predict([[100, 120]], [1], mask_input=mi, multimask=False)
    b = pt.predict([[100, 120]], [1], mask_input=mi, multimask=False)
    assert np.abs(a.logits - b.logits).max() <= TOL
