"""samkit's HQ-SAM equals the official segment-anything-hq on the same random weights."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import perseg_image, synthetic_image

from samkit.predictor import Predictor

TOL = 1e-4


@pytest.fixture(
    scope="module",
    params=[
        ("duck_landscape", lambda: perseg_image("duck_toy/01.jpg")[200:1100]),
        ("synthetic_tall", lambda: synthetic_image(500, 280, seed=7)),
    ],
    ids=lambda p: p[0],
)
def hq_predictors(request, twins_hq):  # type: ignore[no-untyped-def]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from segment_anything_hq import SamPredictor
    off, ours = twins_hq
    image = request.param[1]()
    po, pk = SamPredictor(off), Predictor(ours)
    po.set_image(image)
    pk.set_image(image)
    return po, pk, image


@pytest.mark.parametrize("hq_token_only", [False, True])
@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("prompt", ["points", "box"])
def test_hq_prompt_matches_official_hq_sam(hq_predictors, prompt, multimask, hq_token_only):  # type: ignore[no-untyped-def]
    po, pk, image = hq_predictors
    h, w = image.shape[:2]
    kw: dict = {}
    if prompt == "points":
        kw = dict(
            point_coords=np.array([[w * 0.5, h * 0.4], [w * 0.2, h * 0.8]]),
            point_labels=np.array([1, 0]),
        )
    else:
        kw = dict(box=np.array([w * 0.1, h * 0.15, w * 0.7, h * 0.9]))
    masks, iou, low = po.predict(**kw, multimask_output=multimask, hq_token_only=hq_token_only)
    ours = pk.predict(
        kw.get("point_coords"),
        kw.get("point_labels"),
        kw.get("box"),
        multimask=multimask,
        hq_token_only=hq_token_only,
    )
    assert ours.masks.shape == masks.shape == (1, h, w)  # HQ-SAM: one mask per prompt
    assert np.abs(ours.logits - low).max() <= TOL
    assert np.abs(ours.scores - iou).max() <= TOL
    assert (ours.masks == masks).mean() >= 0.999


def test_hq_checkpoint_is_recognised_by_its_keys(tmp_path, twins_hq) -> None:  # type: ignore[no-untyped-def]
    import torch

    import samkit

    off, _ = twins_hq
    torch.save(off.state_dict(), tmp_path / "sam_hq_small.pth")
    model = samkit.load(tmp_path / "sam_hq_small.pth")
    assert model.is_hq
    assert model.config.encoder_embed_dim == 64
