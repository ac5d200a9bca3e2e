"""PerSAM and PerSAM-F: parity with the official Personalize-SAM scripts on the recorded fixture
(tests/fixtures/persam, see its README), the documented fixes, errors, collections, video, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import samkit
from samkit.cli import main
from samkit.errors import ImageError, PromptError, StateError
from samkit.persam.finetune import _Pixels, combine, dice_loss, focal_loss, mixed_loss_grad
from samkit.persam.persam import PerSAM, read_image, read_reference_mask
from samkit.persam.prior import attention_prior, reference_cells

FIX = Path(__file__).parent / "fixtures" / "persam"
OBJECTS = ["checker_ell", "dotted_ell", "striped_star"]
IMAGES = ["00", "01", "02", "03"]
# Run by default: one non-square (PerSAM) and one square (PerSAM-F) image; the rest is slow.
FAST = {("persam", "checker_ell", "01"), ("persam_f", "checker_ell", "02")}


def image(obj: str, n: str = "00") -> Path:
    return FIX / "data" / "Images" / obj / f"{n}.jpg"


def annotation(obj: str, n: str = "00") -> Path:
    return FIX / "data" / "Annotations" / obj / f"{n}.png"


def expected(script: str) -> dict:
    return json.loads((FIX / "expected" / f"{script}.json").read_text())


def cases(script: str) -> list:
    return [
        pytest.param(o, n, marks=() if (script, o, n) in FAST else pytest.mark.slow, id=f"{o}-{n}")
        for o in OBJECTS
        for n in IMAGES
    ]


@pytest.fixture(scope="module")
def model():
    return samkit.load(FIX / "model.safetensors")


class Runs:
    """Fitted references and segmentations, made once per module and shared by the tests."""

    def __init__(self, model) -> None:
        self.model = model
        self.fitted: dict = {}
        self.results: dict = {}

    def fit(self, script: str, obj: str) -> PerSAM:
        if (script, obj) not in self.fitted:
            # The official scripts always answer with a mask: no presence threshold.
            per = PerSAM(self.model, finetune=script == "persam_f", presence_threshold=None)
            self.fitted[script, obj] = per.fit(image(obj), annotation(obj))
        return self.fitted[script, obj]

    def segment(self, script: str, obj: str, n: str):
        """(result, the first decoder pass's low-res logits)."""
        if (script, obj, n) not in self.results:
            per = self.fit(script, obj)
            seen = []
            decode = per._decode

            def spy(*args, **kwargs):
                out = decode(*args, **kwargs)
                seen.append(out.low.numpy())
                return out

            per._decode = spy
            try:
                self.results[script, obj, n] = (per.segment(image(obj, n)), seen[0])
            finally:
                del per._decode
        return self.results[script, obj, n]


@pytest.fixture(scope="module")
def runs(model):
    return Runs(model)


def assert_calls_match(calls, want: list[dict]) -> None:
    assert len(calls) == len(want)
    for got, ref in zip(calls, want):
        assert got.points.tolist() == ref["points"]
        assert got.labels.tolist() == ref["labels"]
        assert (None if got.box is None else got.box.tolist()) == ref["box"]
        assert got.multimask == ref["multimask"]
        assert got.mask_input == ref["mask_input"]
        np.testing.assert_allclose(got.scores, ref["scores"], atol=1e-4)


def mask_agreement(got: np.ndarray, path: Path) -> float:
    want = np.array(Image.open(path))
    want = (want.any(axis=2) if want.ndim == 3 else want) > 0
    return float((want == got).mean())


@pytest.mark.parametrize("obj,n", cases("persam"))
def test_persam_matches_official_points_prompts_scores_and_mask(runs, obj, n):
    want = expected("persam")[obj]["images"][n]
    res, _ = runs.segment("persam", obj, n)
    assert list(res.mask.shape) == want["image_size"]
    assert_calls_match(res.calls, want["calls"])
    np.testing.assert_array_equal(res.points, want["calls"][0]["points"])
    assert mask_agreement(res.mask, FIX / "expected" / want["mask"]) >= 0.999


@pytest.mark.parametrize("obj,n", cases("persam_f"))
def test_persam_f_matches_official_prompts_scores_and_mask(runs, obj, n):
    want = expected("persam_f")[obj]["images"][n]
    res, _ = runs.segment("persam_f", obj, n)
    assert_calls_match(res.calls, want["calls"])
    assert res.labels.tolist() == [1]
    assert mask_agreement(res.mask, FIX / "expected" / want["mask"]) >= 0.999


def test_persam_first_decoder_pass_logits_match_official(runs):
    """Target-guided attention and target-semantic prompting, checked on the raw logits."""
    want = np.load(FIX / "expected" / "first_call_lowres_logits.npz")
    _, got = runs.segment("persam", "checker_ell", "01")
    np.testing.assert_allclose(got, want["persam/checker_ell/01"], atol=2e-4)


@pytest.mark.parametrize(
    "obj", [o if o == "checker_ell" else pytest.param(o, marks=pytest.mark.slow) for o in OBJECTS]
)
def test_persam_f_learns_the_official_scale_weights(runs, obj):
    want = expected("persam_f")[obj]
    per = runs.fit("persam_f", obj)
    assert per.train_call.points.tolist() == want["train"]["points"]
    np.testing.assert_allclose(per.train_call.scores, want["train"]["scores"], atol=1e-4)
    np.testing.assert_allclose(per.scale_weights, want["scale_weights"], atol=1e-4)


def test_closed_form_gradient_equals_autograd_of_the_official_loss():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5000, generator=g) * 4
    target = (torch.rand(5000, generator=g) > 0.6).float()
    w = torch.nn.Parameter(torch.tensor([[0.3], [-0.2]]))
    z = (logits * combine(w)).sum(0)[None]
    (dice_loss(z, target[None]) + focal_loss(z, target[None])).backward()
    with torch.no_grad():
        got = mixed_loss_grad(_Pixels(logits, target), w)
    torch.testing.assert_close(got, w.grad, rtol=1e-4, atol=1e-7)


def test_reference_pooling_uses_the_normalised_mask_value(model):
    """PerSeg's 128 needs ~97 % cover per cell; the fixed pooling needs half cover."""
    rgb = np.zeros((600, 800, 3), np.uint8)
    rgb[106:297, 107:493, 0] = 128
    official = reference_cells(model, rgb, (64, 64), faithful=True)
    fixed = reference_cells(model, rgb, (64, 64), faithful=False)
    assert int(fixed.sum()) > int(official.sum()) > 0
    assert bool((official <= fixed).all())


def test_empty_reference_mask_raises_prompt_error(model):
    empty = np.zeros((600, 800), bool)
    with pytest.raises(PromptError, match="empty"):
        PerSAM(model).fit(image("checker_ell"), empty)


def test_tiny_reference_mask_is_refused_by_default_and_fixed_on_request(model):
    tiny = np.zeros((600, 800), bool)
    tiny[300:303, 400:403] = True
    with pytest.raises(PromptError, match="faithful=False"):
        PerSAM(model).fit(image("checker_ell"), tiny)
    per = PerSAM(model, faithful=False).fit(image("checker_ell"), tiny)
    assert torch.isfinite(per.target_feat).all()


def test_fixed_prior_is_aligned_with_the_token_grid_on_non_square_images():
    sim = torch.linspace(0, 1, 500 * 1000).reshape(500, 1000)
    official = attention_prior(sim, (64, 64), (512, 1024), 1024, faithful=True).reshape(64, 64)
    fixed = attention_prior(sim, (64, 64), (512, 1024), 1024, faithful=False).reshape(64, 64)
    # The image covers the top 32 token rows; the official map stretches over all 64.
    assert fixed[32:].max() < fixed[:32].min() + 1e-6
    assert official[63, 0] > official[31, 0]
    sq = torch.rand(300, 300)
    torch.testing.assert_close(
        attention_prior(sq, (64, 64), (1024, 1024), 1024, True),
        attention_prior(sq, (64, 64), (1024, 1024), 1024, False),
    )


def test_opencv_reads_are_refused_above_the_pixel_limit(monkeypatch):
    """The faithful (OpenCV) reads of images and reference masks check samkit's one pixel
    limit first, as every other image read does."""
    monkeypatch.setenv("SAMKIT_MAX_PIXELS", "1000")
    with pytest.raises(ImageError, match="SAMKIT_MAX_PIXELS"):
        read_image(image("checker_ell"))
    with pytest.raises(ImageError, match="SAMKIT_MAX_PIXELS"):
        read_reference_mask(annotation("checker_ell"), (600, 800))


def test_reference_mask_of_another_size_gives_clear_error(model):
    with pytest.raises(ImageError, match="does not match"):
        PerSAM(model).fit(image("checker_ell"), np.ones((10, 10), bool))


def test_segment_before_fit_and_weights_without_finetune_give_state_errors(model, runs):
    with pytest.raises(StateError, match="fit"):
        PerSAM(model).segment(image("checker_ell", "01"))
    with pytest.raises(StateError, match="finetune=True"):
        _ = runs.fit("persam", "checker_ell").scale_weights


def test_segment_many_batches_the_encoder_and_matches_official(runs):
    per = runs.fit("persam", "checker_ell")
    many = per.segment_many([image("checker_ell", n) for n in ("00", "01")], batch_size=2)
    for n, res in zip(("00", "01"), many):
        want = expected("persam")["checker_ell"]["images"][n]
        np.testing.assert_array_equal(res.points, want["calls"][0]["points"])
        assert mask_agreement(res.mask, FIX / "expected" / want["mask"]) >= 0.999


def test_segment_video_gives_previous_box_as_hint(tmp_path, runs):
    frame = np.array(Image.open(image("checker_ell", "02")))
    for i in range(2):
        Image.fromarray(frame).save(tmp_path / f"{i:05d}.png")
    per = runs.fit("persam", "checker_ell")
    results = list(per.segment_video(tmp_path))
    assert len(results) == 2
    assert results[0].calls[0].box is None
    hint = results[1].calls[0].box
    ys, xs = np.nonzero(results[0].mask)
    h, w = frame.shape[:2]
    want = [max(xs.min() - 10, 0), max(ys.min() - 10, 0)]
    want += [min(xs.max() + 10, w - 1), min(ys.max() + 10, h - 1)]
    assert hint.tolist() == want


def test_cli_personalize_writes_a_mask_and_an_overlay_per_target(tmp_path, capsys):
    code = main(
        [
            "personalize",
            "--ref",
            str(image("checker_ell")),
            "--ref-mask",
            str(annotation("checker_ell")),
            str(image("checker_ell", "01")),
            "-o",
            str(tmp_path),
            "--model",
            str(FIX / "model.safetensors"),
            "--always",
            "--precision",  # parity with the official fp32 outputs (auto may pick bf16)
            "fp32",
        ]
    )
    assert code == 0
    mask = np.array(Image.open(tmp_path / "01.png"))
    want = expected("persam")["checker_ell"]["images"]["01"]
    assert mask_agreement(mask > 0, FIX / "expected" / want["mask"]) >= 0.999
    assert Image.open(tmp_path / "01_overlay.png").size == (540, 720)
    assert "01.jpg" in capsys.readouterr().out


def test_cli_personalize_empty_reference_mask_exits_2(tmp_path, capsys):
    Image.fromarray(np.zeros((600, 800), np.uint8)).save(tmp_path / "empty.png")
    code = main(
        [
            "personalize",
            "--ref",
            str(image("checker_ell")),
            "--ref-mask",
            str(tmp_path / "empty.png"),
            str(image("checker_ell", "01")),
            "-o",
            str(tmp_path / "out"),
            "--model",
            str(FIX / "model.safetensors"),
        ]
    )
    assert code == 2
    assert "empty" in capsys.readouterr().err


def test_hq_models_work_with_persam_and_refuse_persam_f_clearly() -> None:
    from dataclasses import replace

    from samkit.errors import ConfigError
    from samkit.models import SamConfig, build_sam
    from samkit.persam.persam import PerSAM

    cfg = SamConfig(
        encoder_embed_dim=32,
        encoder_depth=2,
        encoder_num_heads=2,
        encoder_global_attn_indexes=(1,),
        image_size=256,
        window_size=8,
    )
    model = build_sam(replace(cfg, hq=True))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    mask = np.zeros((96, 128), bool)
    mask[20:70, 30:90] = True
    out = PerSAM(model).fit(image, mask).segment(image)
    assert out.mask.shape == (96, 128)
    with pytest.raises(ConfigError, match="HQ-SAM model returns one mask"):
        PerSAM(model, finetune=True)
