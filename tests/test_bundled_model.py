"""Regression test of the bundled samkit-tiny model on a fixed set of held-out synthetic scenes
(seed 1000, never used in training). The bars sit a margin below what the shipped weights reach
(see samkit/weights/samkit-tiny.md); a broken export, a changed architecture or a preprocessing
change that hurts the model shows up here."""

import pytest
import torch

from samkit.data.synthetic import SyntheticDataset
from samkit.eval.prompts import evaluate
from samkit.data import SYNTHETIC_EVAL_SEED

# the shipped weights (step 10663) reach 0.494 and 0.529 on these 20 scenes; the bars sit
# about 0.05 below, so a regression fails while float noise does not
MIN_1CLICK_BEST_OF_3 = 0.44
MIN_BOX = 0.48


@pytest.fixture(scope="module")
def result():
    import samkit

    torch.set_num_threads(1)
    model = samkit.load("samkit-tiny")
    data = SyntheticDataset(seed=SYNTHETIC_EVAL_SEED, size=model.image_size, length=20)
    return evaluate(model, data, n_clicks=2)


def test_bundled_model_one_click_best_of_three_beats_the_bar(result):
    assert result.miou_1click_best_of_3 > MIN_1CLICK_BEST_OF_3


def test_bundled_model_box_prompt_beats_the_bar(result):
    assert result.miou_box > MIN_BOX


def test_a_second_click_does_not_make_the_bundled_model_worse(result):
    assert result.miou_clicks[1] >= result.miou_clicks[0] - 0.02
