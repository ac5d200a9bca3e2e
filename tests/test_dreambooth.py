"""PerSAM-assisted DreamBooth: the masked denoising loss on a tiny diffusers UNet, the subject
masks from one reference on real photos, and `samkit dreambooth-masks`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from diffusers import DDPMScheduler, UNet2DConditionModel
from PIL import Image

import samkit
from samkit.cli import main
from samkit.errors import ConfigError, ImageError
from samkit.image_io import load_image, load_mask
from samkit.persam.dreambooth import latent_mask, masked_loss, subject_masks

SUBJECT = SHARED_DATA / "Images" / "duck_toy"
SUBJECT_MASKS = SHARED_DATA / "Annotations" / "duck_toy"


def tiny_unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=8,
    )


def subject_box(b: int, size: int, box: tuple[int, int, int, int]) -> torch.Tensor:
    """B x 1 x size x size bool masks, subject = the box (x0, y0, x1, y1), exclusive ends."""
    m = torch.zeros(b, 1, size, size, dtype=torch.bool)
    x0, y0, x1, y1 = box
    m[:, :, y0:y1, x0:x1] = True
    return m


# -- the loss ---------------------------------------------------------------------------------


def test_masked_loss_trains_the_unet_on_the_subject_and_never_on_the_background():
    unet, sched = tiny_unet(), DDPMScheduler(num_train_timesteps=1000)
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 4, 16, 16, generator=g)
    noise = torch.randn(2, 4, 16, 16, generator=g)
    t = torch.tensor([10, 700])
    noisy = sched.add_noise(latents, noise, t).requires_grad_(True)
    text = torch.randn(2, 5, 16, generator=g)
    pred = unet(noisy, t, encoder_hidden_states=text).sample
    pred.retain_grad()
    # 128 x 128 photo masks: latent pixels 4..11 (x) and 2..9 (y) are the subject
    mask = subject_box(2, 128, (32, 16, 96, 80))
    loss = masked_loss(pred, noise, mask)
    loss.backward()

    subject = torch.zeros(2, 4, 16, 16, dtype=torch.bool)
    subject[:, :, 2:10, 4:12] = True
    assert torch.equal(pred.grad[~subject], torch.zeros_like(pred.grad[~subject]))
    assert (pred.grad[subject] != 0).all()
    want = ((pred.detach() - noise) ** 2)[subject].mean()
    torch.testing.assert_close(loss.detach(), want, rtol=1e-6, atol=0)
    assert noisy.grad is not None and noisy.grad.abs().sum() > 0
    grads = [p.grad for p in unet.parameters()]
    assert all(gr is not None for gr in grads)
    assert sum(gr.abs().sum() for gr in grads) > 0


def test_masked_loss_is_the_mean_squared_error_over_subject_latent_pixels():
    pred = torch.zeros(1, 2, 2, 2)
    target = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]]])
    mask = subject_box(1, 4, (0, 0, 4, 2))  # the top row of latent pixels
    # (1 + 4 + 25 + 36) / 4
    assert masked_loss(pred, target, mask).item() == pytest.approx(16.5)
    assert masked_loss(pred, target, mask, reduction="sum").item() == pytest.approx(66.0)
    none = masked_loss(pred, target, mask, reduction="none")
    assert none.shape == (1, 2, 2, 2)
    assert none[0, :, 1].abs().sum() == 0


def test_a_latent_pixel_is_subject_when_more_than_half_of_it_is():
    mask = torch.zeros(1, 1, 4, 4)
    mask[0, 0, :2, :2] = 1.0  # latent (0, 0): all subject
    mask[0, 0, 0, 2:] = 1.0  # latent (0, 1): exactly half
    mask[0, 0, 2:, 0] = 1.0  # latent (1, 0): half
    mask[0, 0, 2, 1] = 1.0  # ... plus one pixel: three quarters
    assert latent_mask(mask, (2, 2))[0, 0].tolist() == [[1.0, 0.0], [1.0, 0.0]]
    assert latent_mask(mask, (2, 2), threshold=None)[0, 0].tolist() == [[1.0, 0.5], [0.75, 0.0]]


def test_soft_weights_weigh_each_latent_pixel_by_its_subject_area():
    pred = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    mask = subject_box(1, 4, (0, 0, 3, 2))  # latent (0, 0) whole, (0, 1) half
    loss = masked_loss(pred, target, mask, threshold=None)
    assert loss.item() == pytest.approx((1 * 1 + 0.5 * 4) / 1.5)


def test_bool_and_float_masks_with_or_without_the_channel_axis_agree():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    mask = subject_box(2, 61, (10, 5, 50, 40))  # not a multiple of the latent size
    a = masked_loss(pred, target, mask)
    assert masked_loss(pred, target, mask[:, 0]) == a
    assert masked_loss(pred, target, mask.float()) == a
    assert masked_loss(pred, target, mask[:, 0].numpy().astype(np.uint8) * 255) == a


def test_an_all_background_mask_raises_naming_the_image():
    pred = torch.zeros(2, 4, 8, 8, requires_grad=True)
    mask = subject_box(2, 64, (0, 0, 32, 32))
    mask[1] = False
    with pytest.raises(ImageError, match=r"batch image\(s\) \[1\] covers no latent pixel"):
        masked_loss(pred, torch.ones(2, 4, 8, 8), mask)
    # a subject smaller than a latent pixel: nothing at the default threshold, some with soft ones
    tiny = subject_box(1, 64, (0, 0, 3, 3))
    with pytest.raises(ImageError, match="threshold=None"):
        masked_loss(pred[:1], torch.ones(1, 4, 8, 8), tiny)
    assert masked_loss(pred[:1], torch.ones(1, 4, 8, 8), tiny, threshold=None).item() == 1.0


@pytest.mark.parametrize(
    "pred, target, mask, error, message",
    [
        ((2, 4, 8, 8), (2, 4, 8, 9), (2, 1, 64, 64), ConfigError, "same shape"),
        ((4, 8, 8), (4, 8, 8), (1, 64, 64), ConfigError, "B x C x h x w"),
        ((2, 4, 8, 8), (2, 4, 8, 8), (3, 1, 64, 64), ImageError, "3 mask"),
        ((2, 4, 8, 8), (2, 4, 8, 8), (2, 3, 64, 64), ImageError, "B x 1 x H x W"),
        ((2, 4, 8, 8), (2, 4, 8, 8), (64, 64), ImageError, "B x 1 x H x W"),
    ],
)
def test_shape_mismatches_give_one_line_errors(pred, target, mask, error, message):
    with pytest.raises(error, match=message) as e:
        masked_loss(torch.zeros(pred), torch.zeros(target), torch.ones(mask))
    assert "\n" not in str(e.value)


def test_bad_options_and_values_are_refused():
    pred, mask = torch.zeros(1, 4, 8, 8), torch.ones(1, 64, 64)
    with pytest.raises(ConfigError, match="reduction"):
        masked_loss(pred, pred, mask, reduction="avg")
    with pytest.raises(ConfigError, match="threshold"):
        masked_loss(pred, pred, mask, threshold=1.0)
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        masked_loss(pred, pred, mask * 255.0)


def test_samkit_does_not_import_diffusers():
    code = (
        "import sys, samkit, samkit.cli, samkit.persam.dreambooth, samkit.cli.dreambooth; "
        "sys.exit('diffusers' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# -- the masks --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    if not SUBJECT.exists():
        pytest.skip(f"real photos not present at {SHARED_DATA} (only in the samkit workspace)")
    return samkit.load("samkit-tiny", precision="fp32")


def test_subject_masks_finds_the_subject_in_every_photo(model):
    photos = [SUBJECT / "01.jpg", SUBJECT / "02.jpg"]
    results = subject_masks(model, SUBJECT / "00.jpg", SUBJECT_MASKS / "00.png", photos)
    assert len(results) == 2
    for photo, res in zip(photos, results):
        h, w = load_image(photo).shape[:2]
        assert res.mask.shape == (h, w) and res.mask.dtype == bool
        assert 0.01 < res.mask.mean() < 0.9  # neither empty nor everything
        assert np.isfinite(res.presence) and res.present  # always a mask by default


def test_cli_writes_a_mask_per_photo_a_contact_sheet_and_a_record(model, tmp_path, capsys):
    out = tmp_path / "masks"
    args = ["dreambooth-masks", str(SUBJECT), "--ref-mask", str(SUBJECT_MASKS / "00.png")]
    assert main([*args, "-o", str(out), "--precision", "fp32"]) == 0
    for stem in ("00", "01", "02"):
        mask = np.array(Image.open(out / f"{stem}.png"))
        assert mask.shape == load_image(SUBJECT / f"{stem}.jpg").shape[:2]
        assert set(np.unique(mask)) <= {0, 255} and 0.01 < (mask > 0).mean() < 0.9
    # the reference photo's mask is the given one
    given = load_mask(SUBJECT_MASKS / "00.png")
    assert np.array_equal(np.array(Image.open(out / "00.png")) > 0, given)
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.width == 3 * 256 and sheet.height > 256
    record = json.loads((out / "masks.json").read_text())
    assert record["photos"]["00"]["reference"] is True
    assert set(record["photos"]["01"]) >= {"presence", "score", "pixels"}
    printed = capsys.readouterr().out
    assert "01.jpg: presence" in printed and "(reference)" not in printed


def bad_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("not a folder")
    small = tmp_path / "small.png"
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(small)
    blank = tmp_path / "blank.png"
    Image.fromarray(np.zeros(load_image(SUBJECT / "00.jpg").shape[:2], np.uint8)).save(blank)
    ref_mask = str(SUBJECT_MASKS / "00.png")
    out = str(tmp_path / "out")
    return {
        "missing folder": ([str(tmp_path / "nope"), "--ref-mask", ref_mask, "-o", out], "folder"),
        "no photos": ([str(tmp_path / "empty"), "--ref-mask", ref_mask, "-o", out], "no images"),
        "mask size": ([str(SUBJECT), "--ref-mask", str(small), "-o", out], "does not match"),
        "empty mask": ([str(SUBJECT), "--ref-mask", str(blank), "-o", out], "empty"),
        "unwritable output": (
            [str(SUBJECT), "--ref-mask", ref_mask, "-o", str(tmp_path / "file" / "out")],
            "cannot create the output folder",
        ),
        "output is the subject folder": (
            [str(SUBJECT), "--ref-mask", ref_mask, "-o", str(SUBJECT)],
            "overwrite",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing folder",
        "no photos",
        "mask size",
        "empty mask",
        "unwritable output",
        "output is the subject folder",
    ],
)
def test_cli_bad_input_exits_2_with_a_one_line_message(tmp_path, capsys, case):
    if not SUBJECT.exists():
        pytest.skip(f"real photos not present at {SHARED_DATA} (only in the samkit workspace)")
    args, message = bad_inputs(tmp_path)[case]
    assert main(["dreambooth-masks", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("samkit dreambooth-masks: error:") and err.count("\n") == 1
    assert message in err
    assert not (tmp_path / "out").exists()
