"""Evaluation: IoU, the SAM paper's click protocol, and `samkit eval prompts`."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.eval.metrics import iou, ious
from samkit.eval.prompts import evaluate_mask, first_click, next_click
from samkit.masks import mask_to_box
from samkit.predictor import Prediction


def _square(h=40, w=40, y0=10, y1=30, x0=5, x1=25):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_iou_known_values():
    a = _square(y0=0, y1=10, x0=0, x1=10)
    b = _square(y0=0, y1=10, x0=5, x1=15)
    assert iou(a, b) == pytest.approx(50 / 150)
    assert iou(a, a) == 1.0
    assert iou(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0
    assert ious(np.stack([a, b]), a).tolist() == pytest.approx([1.0, 1 / 3])


def test_first_click_is_the_point_farthest_from_the_boundary():
    x, y = first_click(_square())
    assert 13 <= x <= 16 and 18 <= y <= 21


def test_first_click_treats_the_image_border_as_boundary():
    m = np.zeros((20, 40), bool)
    m[:, :30] = True  # touches the top, bottom and left border
    x, y = first_click(m)
    assert 9 <= y <= 10 and 9 <= x <= 20


def test_next_click_adds_a_missed_part_positively():
    gt = _square()
    pred = gt.copy()
    pred[10:30, 15:25] = False  # right half missed
    x, y, label = next_click(pred, gt)
    assert label == 1 and gt[y, x] and not pred[y, x]


def test_next_click_removes_a_false_positive_negatively():
    gt = _square()
    pred = gt | _square(y0=0, y1=40, x0=28, x1=40)
    x, y, label = next_click(pred, gt)
    assert label == 0 and pred[y, x] and not gt[y, x]


def test_box_prompt_is_the_tight_inclusive_xyxy_box():
    assert mask_to_box(_square()).tolist() == [5, 10, 24, 29]


class OraclePredictor:
    """Returns the ground truth for any prompt: the protocol must then score 1.0 everywhere."""

    def __init__(self, gt):
        self.gt = gt
        self.calls = []

    def predict(self, points=None, labels=None, box=None, mask_input=None, multimask=True):
        self.calls.append((points, labels, box, mask_input, multimask))
        k = 3 if multimask else 1
        masks = np.stack([self.gt] * k)
        return Prediction(masks, np.ones(k, np.float32), np.zeros((k, 16, 16), np.float32))


def test_click_protocol_feeds_back_logits_and_accumulates_clicks():
    gt = _square()
    p = OraclePredictor(gt)
    r = evaluate_mask(p, gt, n_clicks=3)
    assert r.clicks == [1.0, 1.0, 1.0] and r.best_of_3 == 1.0 and r.box == 1.0
    pts = [c[0] for c in p.calls if c[0] is not None]
    assert [len(x) for x in pts] == [1, 2, 3]
    assert p.calls[1][3] is not None and p.calls[1][4] is False
    assert p.calls[-1][2] is not None  # the box prompt


def test_eval_prompts_command_on_a_mask_folder(tmp_path, capsys):
    from samkit.checkpoints import save_safetensors
    from samkit.cli import main
    from samkit.models import SamConfig, build_sam

    cfg = SamConfig(
        32,
        2,
        2,
        (1,),
        image_size=64,
        window_size=2,
        prompt_embed_dim=32,
        decoder_num_heads=2,
        decoder_mlp_dim=64,
        iou_head_hidden_dim=32,
    )
    torch.manual_seed(0)
    save_safetensors(build_sam(cfg), tmp_path / "m.safetensors")
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "masks").mkdir(parents=True)
    Image.fromarray(np.full((48, 64, 3), 120, np.uint8)).save(tmp_path / "d/images/a.jpg")
    Image.fromarray(_square(48, 64).astype(np.uint8) * 255).save(tmp_path / "d/masks/a.png")
    rc = main(
        [
            "eval",
            "prompts",
            str(tmp_path / "d"),
            "--model",
            str(tmp_path / "m.safetensors"),
            "--clicks",
            "3",
            "--json",
            str(tmp_path / "r.json"),
            "--plot",
            str(tmp_path / "r.png"),
        ]
    )
    assert rc == 0
    out = json.loads((tmp_path / "r.json").read_text())
    assert out["n_masks"] == 1 and len(out["miou_clicks"]) == 3
    assert 0 <= out["miou_box"] <= 1 and (tmp_path / "r.png").stat().st_size > 1000
    # A bare --json prints one JSON object on stdout (the readable lines go to stderr).
    capsys.readouterr()
    args = ["eval", "prompts", str(tmp_path / "d"), "--model", str(tmp_path / "m.safetensors")]
    assert main([*args, "--clicks", "2", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_masks"] == 1 and "miou_box" in printed
