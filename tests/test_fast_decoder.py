"""The fast decoder (samkit.models.fast_decoder, ``Predictor(fast=True)``, the default) gives the
reference decoder's results (``Sam.decode``, ``Predictor(fast=False)``) for every prompt kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import synthetic_image

from samkit.models import fast_decoder
from samkit.predictor import Prediction, Predictor

TOL = 1e-4
H, W = 300, 520


@pytest.fixture(scope="module", params=[(H, W), (W, H)], ids=["wide", "tall"])
def pair(request, twins):  # type: ignore[no-untyped-def]
    """(fast, reference) predictors on the same embedding of one image."""
    h, w = request.param
    fast, ref = Predictor(twins[1]), Predictor(twins[1], fast=False)
    fast.set_image(synthetic_image(h, w, seed=3))
    ref.set_embedding(fast.embedding)
    assert fast.uses_fast_decoder(fast.embedding.features)
    assert not ref.uses_fast_decoder(ref.embedding.features)
    return fast, ref, (h, w)


def _prompts(h: int, w: int) -> dict[str, dict]:
    return {
        "single_point": dict(points=[[w * 0.4, h * 0.5]], labels=[1]),
        "points_with_negatives": dict(
            points=[[w * 0.3, h * 0.3], [w * 0.7, h * 0.6], [w * 0.5, h * 0.9]],
            labels=[1, 0, 1],
        ),
        "box": dict(box=[w * 0.1, h * 0.2, w * 0.8, h * 0.7]),
        "box_and_points": dict(
            points=[[w * 0.5, h * 0.5], [w * 0.2, h * 0.25]],
            labels=[1, 0],
            box=[w * 0.15, h * 0.2, w * 0.85, h * 0.8],
        ),
    }


def assert_same(fast: Prediction, ref: Prediction, pred: Predictor) -> None:
    """Scores and low-res logits within TOL; masks equal except where the reference logit at
    full size lies within TOL of the threshold (float rounding may put it either side)."""
    assert fast.masks.shape == ref.masks.shape and fast.logits.shape == ref.logits.shape
    np.testing.assert_allclose(fast.logits, ref.logits, rtol=0, atol=TOL)
    np.testing.assert_allclose(fast.scores, ref.scores, rtol=0, atol=TOL)
    emb = pred.embedding
    high = pred.model.postprocess_masks(
        torch.from_numpy(ref.logits)[None], emb.input_size, emb.original_size
    )[0].numpy()
    assert np.array_equal(ref.masks, high > pred.model.mask_threshold)
    differ = fast.masks != ref.masks
    assert (np.abs(high[differ] - pred.model.mask_threshold) <= TOL).all()


@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single_mask"])
@pytest.mark.parametrize("prompt", list(_prompts(1, 1)))
def test_fast_decoder_equals_reference(pair, prompt, multimask) -> None:  # type: ignore[no-untyped-def]
    fast, ref, size = pair
    p = _prompts(*size)[prompt]
    assert_same(fast.predict(**p, multimask=multimask), ref.predict(**p, multimask=multimask), ref)


@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single_mask"])
@pytest.mark.parametrize("prompt", ["points_with_negatives", "box_and_points"])
def test_fast_decoder_equals_reference_with_mask_input(pair, prompt, multimask) -> None:  # type: ignore[no-untyped-def]
    fast, ref, size = pair
    p = _prompts(*size)[prompt]
    first = ref.predict(**p)
    low = first.logits[np.argmax(first.scores)][None]
    assert_same(
        fast.predict(**p, mask_input=low, multimask=multimask),
        ref.predict(**p, mask_input=low, multimask=multimask),
        ref,
    )


@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single_mask"])
@pytest.mark.parametrize("kinds", ["points", "boxes", "boxes_and_points", "mask_input"])
def test_fast_decoder_equals_reference_on_batches(pair, kinds, multimask) -> None:  # type: ignore[no-untyped-def]
    fast, ref, (h, w) = pair
    kw: dict = {}
    if "points" in kinds:
        kw["points"] = [
            [[0.2 * w, 0.2 * h], [0.6 * w, 0.4 * h]],
            [[0.7 * w, 0.8 * h], [0.1, 0.1]],
            [[0.5 * w, 0.5 * h], [0.9 * w, 0.1 * h]],
        ]
        kw["labels"] = [[1, 0], [1, 1], [1, 0]]
    if "boxes" in kinds:
        kw["boxes"] = [
            [0.1 * w, 0.1 * h, 0.5 * w, 0.6 * h],
            [0.4 * w, 0.3 * h, 0.9 * w, 0.95 * h],
            [0.0, 0.0, w, h],
        ]
    if kinds == "mask_input":
        firsts = [ref.predict(**p) for p in list(_prompts(h, w).values())[:3]]
        kw["mask_input"] = np.stack([r.logits[np.argmax(r.scores)][None] for r in firsts])
    got = fast.predict_batch(**kw, multimask=multimask)
    want = ref.predict_batch(**kw, multimask=multimask)
    assert len(got) == len(want) == 3
    for g, r in zip(got, want):
        assert_same(g, r, ref)


def test_fast_false_never_runs_the_fast_decoder(pair, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, ref, (h, w) = pair

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("Predictor(fast=False) ran the fast decoder")

    monkeypatch.setattr(fast_decoder, "decode_prompts", refuse)
    for p in _prompts(h, w).values():
        ref.predict(**p)
    ref.predict_batch(boxes=[[0, 0, w / 2, h / 2], [w / 2, h / 2, w, h]])


def test_upscaler_accessors_name_the_official_layers(twins) -> None:  # type: ignore[no-untyped-def]
    """The fast decoder reads the upscaler by name; the checkpoint keys stay the official
    ``output_upscaling.{0,1,3}`` (the GELUs have no weights)."""
    dec = twins[1].mask_decoder
    layers = [dec.upscale_conv1, dec.upscale_norm, dec.upscale_act1]
    layers += [dec.upscale_conv2, dec.upscale_act2]
    assert all(a is b for a, b in zip(layers, dec.output_upscaling))
    assert len(layers) == len(dec.output_upscaling)
    keys = {k for k in dec.state_dict() if k.startswith("output_upscaling.")}
    want = {f"output_upscaling.{i}.{p}" for i in (0, 1, 3) for p in ("weight", "bias")}
    assert keys == want


# -- HQ-SAM: one mask per prompt (best SAM token + HQ token), as Sam.decode gives it ----------


@pytest.fixture(scope="module")
def hq_small(small_cfg):  # type: ignore[no-untyped-def]
    """A 256 px HQ model whose masks pass lowered filters (random weights: logits x10)."""
    from dataclasses import replace

    from samkit.models import build_sam

    torch.manual_seed(2)
    model = build_sam(replace(small_cfg, hq=True, image_size=256)).eval()
    dec = model.mask_decoder
    with torch.no_grad():
        for mlp in [*dec.output_hypernetworks_mlps, dec.hf_mlp]:
            mlp.layers[-1].weight.mul_(10.0)
            mlp.layers[-1].bias.mul_(10.0)
    return model


@pytest.fixture(scope="module")
def hq_features(hq_small):  # type: ignore[no-untyped-def]
    model = hq_small
    emb = Predictor(model).set_image(synthetic_image(H, W, seed=5))
    coords = torch.tensor([[0.1, 0.2], [0.5, 0.5], [0.9, 0.3], [0.3, 0.9]], dtype=torch.float64)
    return model, emb.features, coords * torch.tensor([[W, H]]) * (model.image_size / W)


@pytest.mark.parametrize("hq_token_only", [False, True], ids=["sam_plus_hq", "hq_token_only"])
@pytest.mark.parametrize("multimask", [True, False], ids=["multimask", "single_mask"])
def test_fast_decoder_equals_reference_for_hq_points(hq_features, multimask, hq_token_only) -> None:  # type: ignore[no-untyped-def]
    model, features, coords = hq_features
    labels = torch.ones(len(coords), 1, dtype=torch.int)
    with torch.inference_mode():
        want, want_iou = model.decode(
            features,
            (coords[:, None], labels),
            multimask_output=multimask,
            hq_token_only=hq_token_only,
        )
        dec = fast_decoder.decode_points(
            model, features, coords, multimask=multimask, hq_token_only=hq_token_only
        )
        got = dec.all_masks(chunk=3)
        # The generator asks for some prompts' masks only, in any order, repeats included.
        some = dec.masks(torch.tensor([2, 0, 2]), torch.zeros(3, dtype=torch.long))
    assert got.shape == want.shape and dec.iou.shape == want_iou.shape == (len(coords), 1)
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    np.testing.assert_allclose(dec.iou, want_iou, rtol=0, atol=TOL)
    np.testing.assert_allclose(some, want[[2, 0, 2], 0], rtol=0, atol=TOL)


def test_hq_predictor_keeps_the_reference_decoder(hq_features) -> None:  # type: ignore[no-untyped-def]
    """The predictor does not pass hq_token_only to the fast decoder: HQ prompts stay on
    Sam.decode there; the generator (hq_token_only=False, as the official) takes the fast path."""
    model, features, _ = hq_features
    assert not Predictor(model).uses_fast_decoder(features)
    assert fast_decoder.supports_fast_path(model, hq=True)


def test_hq_generator_fast_path_equals_reference(hq_small, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from samkit import MaskGenerator

    img = synthetic_image(200, 260, seed=4)
    opts = dict(points_per_side=5, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    opts |= dict(box_nms_thresh=1.0)
    want = MaskGenerator(hq_small, fast=False, **opts).generate(img)

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the HQ generator ran the reference decoder")

    monkeypatch.setattr(hq_small, "decode", refuse)
    got = MaskGenerator(hq_small, **opts).generate(img)
    assert len(want) > 10 and len(got) == len(want)
    for g, w in zip(got, want):
        assert np.array_equal(g["segmentation"], w["segmentation"])
        assert g["bbox"] == w["bbox"] and g["point_coords"] == w["point_coords"]
        assert abs(g["predicted_iou"] - w["predicted_iou"]) <= TOL
        assert abs(g["stability_score"] - w["stability_score"]) <= 1e-3


def test_hq_mask_logits_fast_path_equals_reference(hq_small) -> None:  # type: ignore[no-untyped-def]
    from samkit import MaskGenerator

    img = synthetic_image(180, 150, seed=6)
    got, want = [
        list(MaskGenerator(hq_small, points_per_side=3, fast=f).mask_logits(img))
        for f in (True, False)
    ]
    assert [len(c.iou) for c in got] == [len(c.iou) for c in want] == [9]
    np.testing.assert_allclose(got[0].iou, want[0].iou, rtol=0, atol=TOL)
    np.testing.assert_allclose(got[0].logits, want[0].logits, rtol=0, atol=TOL)
    np.testing.assert_array_equal(got[0].points, want[0].points)
