"""Regression test of the bundled samkit-tiny model on a fixed set of held-out synthetic scenes
(seed 1000, never used in training) and, where the samkit workspace has them, on the 9 real
photos of ../shared/data/perseg-examples. The bars sit a margin below what the shipped weights
reach (see samkit/weights/samkit-tiny.md); a broken export, a changed architecture or a
preprocessing change that hurts the model shows up here."""

import pytest
import torch
from conftest import SHARED_DATA

from samkit.data import SYNTHETIC_EVAL_SEED
from samkit.data.synthetic import SyntheticDataset
from samkit.eval.prompts import evaluate

# the shipped weights (tiny_p8, 2258 + 3060 + 3845 steps on mixed photo-like + procedural
# scenes) reach 0.576 (1 click, best of 3) and 0.645 (box) on these 20 scenes, 0.685 (1 click)
# and 0.792 (box) on the 9 real photos; the bars sit about 0.05 below, so a regression fails
# while float noise does not
MIN_1CLICK_BEST_OF_3 = 0.52
MIN_BOX = 0.59
MIN_REAL_1CLICK = 0.63
MIN_REAL_BOX = 0.74
MIN_REAL_PERSAM = 0.45  # PerSAM, real objects 00 -> 01, 02: 0.500 with the shipped weights


@pytest.fixture(scope="module")
def model():
    import samkit

    torch.set_num_threads(1)
    return samkit.load("samkit-tiny")


@pytest.fixture(scope="module")
def result(model):
    data = SyntheticDataset(seed=SYNTHETIC_EVAL_SEED, size=model.image_size, length=20)
    return evaluate(model, data, n_clicks=2)


@pytest.fixture(scope="module")
def real(model):
    if not SHARED_DATA.exists():
        pytest.skip(f"real photos not present at {SHARED_DATA} (only in the samkit workspace)")
    from samkit.data.folders import ImageMaskFolder

    return evaluate(model, ImageMaskFolder(SHARED_DATA), n_clicks=1)


def test_bundled_model_one_click_best_of_three_beats_the_bar(result):
    assert result.miou_1click_best_of_3 > MIN_1CLICK_BEST_OF_3


def test_bundled_model_box_prompt_beats_the_bar(result):
    assert result.miou_box > MIN_BOX


def test_a_second_click_does_not_make_the_bundled_model_worse(result):
    assert result.miou_clicks[1] >= result.miou_clicks[0] - 0.02


def test_bundled_model_segments_real_photos_from_one_click(real):
    assert real.n_masks == 9
    assert real.miou_1click > MIN_REAL_1CLICK


def test_bundled_model_segments_real_photos_from_a_box(real):
    assert real.miou_box > MIN_REAL_BOX


def test_bundled_model_recommends_generator_settings_that_find_objects() -> None:
    import samkit
    from samkit.automatic import MaskGenerator
    from samkit.data.synthetic import SceneGenerator

    model = samkit.load("samkit-tiny", device="cpu")
    assert set(model.generator_defaults) == {"pred_iou_thresh", "stability_score_thresh"}
    image = SceneGenerator(seed=SYNTHETIC_EVAL_SEED, size=320).scene(0).image
    anns = MaskGenerator.from_preset(model, "default", points_per_side=8).generate(image)
    assert len(anns) >= 1  # the official 0.88 / 0.95 keep nothing with this small model


def test_bundled_model_personalizes_the_real_objects(model) -> None:
    """PerSAM on the demo's real objects: each learnt from its photo 00 and mask, found in 01 and
    02 (the demo's protocol, `samkit demo`)."""
    if not SHARED_DATA.exists():
        pytest.skip(f"real photos not present at {SHARED_DATA} (only in the samkit workspace)")
    import numpy as np

    import samkit
    from samkit.eval.metrics import iou
    from samkit.image_io import load_image, load_mask

    scores = []
    for obj in sorted(p for p in (SHARED_DATA / "Images").iterdir() if p.is_dir()):
        ann = SHARED_DATA / "Annotations" / obj.name
        per = samkit.PerSAM(model, faithful=False, presence_threshold=None)
        per.fit(load_image(obj / "00.jpg"), load_mask(ann / "00.png"))
        for t in ("01", "02"):
            out = per.segment(load_image(obj / f"{t}.jpg"))
            scores.append(iou(out.mask, load_mask(ann / f"{t}.png")))
    assert len(scores) == 6
    assert np.mean(scores) > MIN_REAL_PERSAM
