"""samkit's SAM equals the official segment-anything on the same random weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import perseg_image, synthetic_image
from official import parity_prompts

from samkit.predictor import Predictor

LOGIT_TOL = 1e-4
MASK_AGREEMENT = 0.999


def _images():  # type: ignore[no-untyped-def]
    return [
        ("cat_portrait", lambda: perseg_image("cat/00.jpg")[:, 200:900]),  # 1282 x 700
        ("sneaker_landscape", lambda: perseg_image("colorful_sneaker/01.jpg")[300:1500]),
        ("synthetic_wide", lambda: synthetic_image(300, 520, seed=3)),
        ("synthetic_tall", lambda: synthetic_image(641, 333, seed=4)),
    ]


@pytest.fixture(scope="module", params=_images(), ids=lambda p: p[0])
def predictors(request, twins):  # type: ignore[no-untyped-def]
    from segment_anything import SamPredictor

    off, ours = twins
    image = request.param[1]()
    po, pk = SamPredictor(off), Predictor(ours)
    po.set_image(image)
    pk.set_image(image)
    return po, pk, image


def _official(po, p, multimask, mask_input=None):  # type: ignore[no-untyped-def]
    return po.predict(
        point_coords=p.get("points"),
        point_labels=p.get("labels"),
        box=p.get("box"),
        mask_input=mask_input,
        multimask_output=multimask,
    )


def _assert_same(official, ours) -> None:  # type: ignore[no-untyped-def]
    masks, iou, low = official
    assert ours.logits.shape == low.shape
    assert np.abs(ours.logits - low).max() <= LOGIT_TOL
    assert np.abs(ours.scores - iou).max() <= LOGIT_TOL
    assert ours.masks.shape == masks.shape
    assert (ours.masks == masks).mean() >= MASK_AGREEMENT


def test_image_embedding_matches_official(predictors) -> None:  # type: ignore[no-untyped-def]
    po, pk, _ = predictors
    diff = (po.features - pk.embedding.features.embeddings).abs().max().item()
    assert diff <= LOGIT_TOL


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("prompt", ["one_point", "points_with_negatives", "box", "box_and_points"])
def test_prompt_matches_official_sam(predictors, prompt, multimask) -> None:  # type: ignore[no-untyped-def]
    po, pk, image = predictors
    p = parity_prompts(*image.shape[:2])[prompt]
    ours = pk.predict(p.get("points"), p.get("labels"), p.get("box"), multimask=multimask)
    _assert_same(_official(po, p, multimask), ours)


def test_mask_input_refinement_matches_official(predictors) -> None:  # type: ignore[no-untyped-def]
    po, pk, image = predictors
    p = parity_prompts(*image.shape[:2])["points_with_negatives"]
    first = pk.predict(p["points"], p["labels"])
    best = first.logits[np.argmax(first.scores)][None]
    ours = pk.predict(p["points"], p["labels"], mask_input=best, multimask=False)
    _assert_same(_official(po, p, False, mask_input=best), ours)


def test_batched_boxes_match_official_predict_torch(predictors) -> None:  # type: ignore[no-untyped-def]
    po, pk, image = predictors
    h, w = image.shape[:2]
    boxes = np.array([[0.1 * w, 0.1 * h, 0.5 * w, 0.6 * h], [0.4 * w, 0.3 * h, 0.9 * w, 0.95 * h]])
    ours = pk.predict_batch(boxes=boxes)
    tb = po.transform.apply_boxes_torch(torch.as_tensor(boxes, dtype=torch.float), (h, w))
    masks, iou, low = po.predict_torch(None, None, boxes=tb, multimask_output=True)
    for i, r in enumerate(ours):
        _assert_same((masks[i].numpy(), iou[i].numpy(), low[i].numpy()), r)


def test_batched_point_sets_equal_one_at_a_time(predictors) -> None:  # type: ignore[no-untyped-def]
    _, pk, image = predictors
    h, w = image.shape[:2]
    pts = np.array([[[0.2 * w, 0.2 * h], [0.6 * w, 0.4 * h]], [[0.7 * w, 0.8 * h], [0.1, 0.1]]])
    lbl = np.array([[1, 0], [1, 1]])
    batch = pk.predict_batch(pts, lbl)
    for i in range(2):
        single = pk.predict(pts[i], lbl[i])
        assert np.abs(batch[i].logits - single.logits).max() <= 1e-5


@pytest.mark.slow
def test_real_vit_b_configuration_matches_official() -> None:
    """The full vit_b architecture (random weights): embedding and one click."""
    from official import twin_models
    from segment_anything import SamPredictor

    from samkit.models import CONFIGS

    torch.set_num_threads(2)
    off, ours = twin_models(CONFIGS["vit_b"], seed=5)
    image = synthetic_image(480, 640, seed=5)
    po, pk = SamPredictor(off), Predictor(ours)
    po.set_image(image)
    pk.set_image(image)
    assert (po.features - pk.embedding.features.embeddings).abs().max().item() <= LOGIT_TOL
    p = parity_prompts(480, 640)["box_and_points"]
    ours_res = pk.predict(p["points"], p["labels"], p["box"])
    _assert_same(_official(po, p, True), ours_res)


def test_set_images_batch_equals_single_images(twins) -> None:  # type: ignore[no-untyped-def]
    _, ours = twins
    a, b = synthetic_image(200, 300, 1), synthetic_image(310, 180, 2)
    pk = Predictor(ours)
    both = pk.set_images([a, b])
    for img, emb in zip([a, b], both):
        single = Predictor(ours).set_image(img)
        diff = (single.features.embeddings - emb.features.embeddings).abs().max().item()
        assert diff <= 1e-4
        assert emb.original_size == img.shape[:2]


def test_postprocess_upsamples_only_the_unpadded_rows_with_the_same_numbers() -> None:
    """Sam.postprocess_masks skips the low-res rows/columns that only reach the padding; the
    result must be bit-identical to upsampling everything and cropping (the official order)."""
    import torch.nn.functional as F

    from samkit.models import CONFIGS, build_sam

    torch.manual_seed(0)
    m = build_sam(CONFIGS["tiny"])
    s = m.image_size
    low = torch.randn(3, 2, s // 4, s // 4)
    for inp in [(s, s * 3 // 4), (s * 3 // 4, s), (s, s), (s - 1, 7), (5, s), (s - 4, s - 5)]:
        for out in [(inp[0] * 2 + 1, inp[1] + 3), inp]:  # inp: same size, the identity
            full = F.interpolate(low, (s, s), mode="bilinear", align_corners=False)
            want = F.interpolate(
                full[..., : inp[0], : inp[1]], out, mode="bilinear", align_corners=False
            )
            assert torch.equal(m.postprocess_masks(low, inp, out), want), (inp, out)
            buf = torch.empty(*low.shape[:2], *out)
            assert torch.equal(m.postprocess_masks(low, inp, out, out=buf), want), (inp, out)
