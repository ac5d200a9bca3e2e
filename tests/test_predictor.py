"""Predictor behaviour beyond parity: validation messages, embeddings saved and reused."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import synthetic_image

from samkit.errors import PromptError, StateError
from samkit.models import build_sam
from samkit.predictor import ImageEmbedding, Predictor


@pytest.fixture(scope="module")
def pred(twins):  # type: ignore[no-untyped-def]
    p = Predictor(twins[1])
    p.set_image(synthetic_image(120, 200, seed=9))
    return p


def test_predict_before_set_image_says_what_to_do(twins) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(StateError, match="set_image"):
        Predictor(twins[1]).predict([[1, 1]], [1])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(points=[[250, 10]], labels=[1]), "outside the 200x120 image"),
        (dict(points=[[10, -1]], labels=[1]), "outside"),
        (dict(points=[[np.nan, 10]], labels=[1]), "NaN"),
        (dict(points=[[10, 10]], labels=[2]), "labels must be 1 .object. or 0"),
        (dict(points=[[10, 10], [20, 20]], labels=[1]), "2 points but 1 labels"),
        (dict(points=[[10, 10]]), "points and labels go together"),
        (dict(points=[[1, 2, 3]], labels=[1]), "N x 2"),
        (dict(box=[50, 10, 20, 40]), "x1 < x0"),
        (dict(box=[1, 2, 3]), "4 numbers"),
        (dict(box=[300, 200, 400, 300]), "outside"),
        (dict(points=[[10, 10]], labels=[1], mask_input=np.zeros((256, 256))), "1 x 256 x 256"),
        (dict(points=[[10, 10]], labels=[1], mask_input=np.zeros((1, 64, 64))), "low-res logits"),
    ],
)
def test_bad_prompts_name_the_problem(pred, kwargs, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PromptError, match=message):
        pred.predict(**kwargs)


def test_predict_batch_validates_shapes(pred) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PromptError, match="N x P x 2"):
        pred.predict_batch(points=[[10, 10]], labels=[1])
    with pytest.raises(PromptError, match="one box per prompt"):
        pred.predict_batch(points=[[[10, 10]]], labels=[[1]], boxes=[[0, 0, 5, 5], [1, 1, 6, 6]])
    with pytest.raises(PromptError, match="needs points, boxes or mask_input"):
        pred.predict_batch()


def test_result_shapes_and_types(pred) -> None:  # type: ignore[no-untyped-def]
    r = pred.predict([[50, 60]], [1])
    assert r.masks.shape == (3, 120, 200) and r.masks.dtype == bool
    assert r.scores.shape == (3,) and r.scores.dtype == np.float32
    assert r.logits.shape == (3, 256, 256) and r.logits.dtype == np.float32
    assert r.best.shape == (120, 200)
    assert pred.predict([[50, 60]], [1], multimask=False).masks.shape == (1, 120, 200)


def test_saved_embedding_gives_the_same_masks(tmp_path, pred, twins) -> None:  # type: ignore[no-untyped-def]
    pred.embedding.save(tmp_path / "e.safetensors")
    fresh = Predictor(twins[1])
    fresh.set_embedding(ImageEmbedding.load(tmp_path / "e.safetensors"))
    a = pred.predict([[50, 60]], [1])
    b = fresh.predict([[50, 60]], [1])
    assert np.array_equal(a.masks, b.masks) and np.allclose(a.logits, b.logits)


def test_embedding_from_another_model_is_refused(tmp_path, pred, small_cfg) -> None:  # type: ignore[no-untyped-def]
    pred.embedding.save(tmp_path / "e.safetensors")
    other = Predictor(build_sam(small_cfg))
    with pytest.raises(StateError, match="different model"):
        other.set_embedding(ImageEmbedding.load(tmp_path / "e.safetensors"))


def test_too_elongated_image_is_a_clear_image_error() -> None:
    import numpy as np
    import pytest

    import samkit
    from samkit.errors import ImageError

    pred = samkit.Predictor(samkit.load("samkit-tiny", device="cpu"))
    with pytest.raises(ImageError, match="too elongated"):
        pred.set_image(np.zeros((2, 2000, 3), np.uint8))
