"""HQ-SAM training: a frozen SAM, a learning HQ head, the official loss, resumable runs, and the
``train-hq`` / ``eval hq`` commands."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.checkpoints import save_safetensors
from samkit.data.hqseg import HQSegFolder
from samkit.data.thin import ThinDataset
from samkit.models import SamConfig, build_sam
from samkit.train.hq_task import (
    HQ_MODULES,
    HQTrainConfig,
    hq_from_sam,
    hq_parameters,
    hq_step_loss,
    make_hq_batch,
    train_hq,
)
from samkit.train.losses import hq_loss, uncertain_points
from samkit.train.prompts import label_boxes

TINY = SamConfig(
    encoder_embed_dim=32,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    image_size=64,
    window_size=2,
    prompt_embed_dim=32,
    decoder_mlp_dim=64,
    iou_head_hidden_dim=32,
)


def base_sam(seed: int = 0):  # type: ignore[no-untyped-def]
    torch.manual_seed(seed)
    return build_sam(TINY)


def cfg(**kw) -> HQTrainConfig:  # type: ignore[no-untyped-def]
    base = dict(
        steps=4, images_per_step=2, masks_per_image=2, jitter=(0.8, 1.5), log_every=1, device="cpu"
    )
    return HQTrainConfig(**{**base, **kw})


def test_hq_from_sam_keeps_every_sam_weight_and_adds_the_five_hq_modules() -> None:
    sam = base_sam()
    hq = hq_from_sam(sam)
    assert hq.is_hq and not sam.is_hq
    own = hq.state_dict()
    for k, v in sam.state_dict().items():
        assert torch.equal(own[k], v), k
    new = {k.split(".")[1] for k in set(own) - set(sam.state_dict())}
    assert new == set(HQ_MODULES)


def test_a_training_step_changes_only_hq_parameters(tmp_path: Path) -> None:
    model = hq_from_sam(base_sam())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_hq(model, ThinDataset(1, 64), cfg(steps=2), tmp_path, progress=False)
    after = model.state_dict()
    hq_keys = set(hq_parameters(model))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= hq_keys
    assert all(torch.equal(before[k], after[k]) for k in before if k not in hq_keys)
    assert all(not p.requires_grad for n, p in model.named_parameters() if n not in hq_keys)


def test_resume_after_interruption_continues_from_the_saved_step(tmp_path: Path) -> None:
    data = ThinDataset(1, 64)
    whole = hq_from_sam(base_sam())
    train_hq(whole, data, cfg(), tmp_path / "whole", progress=False)
    cut = hq_from_sam(base_sam())
    state = train_hq(cut, data, cfg(), tmp_path / "cut", stop_after=2, progress=False)
    assert state.step == 2
    resumed = hq_from_sam(base_sam())
    state = train_hq(resumed, data, cfg(), tmp_path / "cut", progress=False)
    assert state.step == 4
    assert [h["step"] for h in state.history] == [1, 2, 3, 4]
    a, b = hq_parameters(whole), hq_parameters(resumed)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_a_checkpoint_of_the_hq_trainer_before_the_shared_loop_resumes(tmp_path: Path) -> None:
    data = ThinDataset(1, 64)
    whole = hq_from_sam(base_sam())
    train_hq(whole, data, cfg(), tmp_path / "whole", progress=False)
    train_hq(hq_from_sam(base_sam()), data, cfg(), tmp_path / "cut", stop_after=2, progress=False)
    ck_path = tmp_path / "cut" / "last.pt"
    ck = torch.load(ck_path, weights_only=True)
    del ck["rng"], ck["decay_steps"]
    ck["decay_step"] = -1  # the old HQ trainer's layout
    torch.save(ck, ck_path)
    resumed = hq_from_sam(base_sam())
    state = train_hq(resumed, data, cfg(), tmp_path / "cut", progress=False)
    assert state.step == 4
    a, b = hq_parameters(whole), hq_parameters(resumed)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_bf16_autocast_trains_only_the_hq_head_on_cpu(tmp_path: Path) -> None:
    model = hq_from_sam(base_sam())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = train_hq(
        model, ThinDataset(1, 64), cfg(steps=2, precision="bf16"), tmp_path, progress=False
    )
    assert all(np.isfinite(h["loss"]) for h in state.history)
    hq_keys = set(hq_parameters(model))
    after = model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in hq_keys)
    assert all(torch.equal(before[k], after[k]) for k in before if k not in hq_keys)


def test_loss_decreases_over_a_few_steps_on_one_scene(tmp_path: Path) -> None:
    class OneScene:
        def __len__(self) -> int:
            return 1

        def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
            return ThinDataset(2, 64)[0]

    model = hq_from_sam(base_sam())
    c = cfg(steps=25, lr=1e-2, images_per_step=1, jitter=(1.0, 1.0))
    batch = make_hq_batch(model, OneScene(), c, 0)
    with torch.no_grad():
        before, _ = hq_step_loss(model, batch, c, 0)
    train_hq(model, OneScene(), c, tmp_path, progress=False)
    with torch.no_grad():
        after, _ = hq_step_loss(model, batch, c, 0)
    assert float(after) < 0.8 * float(before)


def test_point_sampled_loss_is_lower_for_the_right_mask() -> None:
    labels = torch.zeros(2, 32, 32)
    labels[:, 8:24, 8:24] = 1
    right = (labels[:, None] * 20 - 10).clone()
    gen = torch.Generator().manual_seed(0)
    good = hq_loss(right, labels, gen, num_points=256).total
    bad = hq_loss(-right, labels, gen, num_points=256).total
    # most points sit at the edge, where the upsampled logits are uncertain: good is not 0
    assert float(good) < 0.4 and float(bad) > 5 * float(good)


def test_uncertain_points_gather_where_logits_are_near_zero() -> None:
    x = torch.arange(40.0)
    logits = (x - 20).expand(1, 1, 40, 40).clone()  # boundary at x = 20 (pixel coordinates)
    gen = torch.Generator().manual_seed(0)
    pts = uncertain_points(logits, 400, 3.0, 0.75, gen)[0]
    dist = (pts[:, 0] * 40 - 0.5 - 20).abs()
    # the 300 most uncertain of 1200 uniform candidates (a few sit at the zero-padded border)
    assert (dist[:300] < 6).float().mean() > 0.95
    assert dist[300:].max() > 10  # the 100 uniform ones cover the image


def test_boxes_follow_the_official_masks_to_boxes_convention() -> None:
    lab = torch.zeros(1, 20, 20)
    lab[0, 5:9, 3:12] = 1.0
    assert label_boxes(lab).tolist() == [[3.0, 5.0, 11.0, 8.0]]


def test_hqseg_folder_reads_im_gt_and_same_folder_layouts(tmp_path: Path) -> None:
    img = np.full((20, 30, 3), 90, np.uint8)
    gt = np.zeros((20, 30, 3), np.uint8)
    gt[5:10, 5:10] = 255
    gt[12:15, 12:15] = 100  # below 128: background, as the official evaluator reads it
    for d in ("DIS-TR/im", "DIS-TR/gt", "ecssd"):
        (tmp_path / d).mkdir(parents=True)
    Image.fromarray(img).save(tmp_path / "DIS-TR/im/a.jpg")
    Image.fromarray(gt).save(tmp_path / "DIS-TR/gt/a.png")
    Image.fromarray(img).save(tmp_path / "ecssd/b.jpg")
    Image.fromarray(gt[..., 0]).save(tmp_path / "ecssd/b.png")
    ds = HQSegFolder(tmp_path)
    assert len(ds) == 2
    for i in range(2):
        image, masks = ds[i]
        assert image.shape == (20, 30, 3) and masks.shape == (1, 20, 30)
        assert masks.sum() == 25


def _save_models(tmp_path: Path) -> tuple[str, str]:
    sam = base_sam()
    hq = hq_from_sam(sam)
    base_p, hq_p = tmp_path / "base.safetensors", tmp_path / "hq.safetensors"
    save_safetensors(sam, base_p)
    save_safetensors(hq, hq_p)
    return str(base_p), str(hq_p)


def test_eval_hq_cli_prints_miou_and_mbiou_for_base_and_hq(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from samkit.cli import main

    base_p, hq_p = _save_models(tmp_path)
    out = tmp_path / "res.json"
    argv = ["eval", "hq", "synthetic-thin", "--model", hq_p, "--base", base_p, "--limit", "2"]
    assert main(argv + ["--json", str(out), "--plot", str(tmp_path / "ex.png")]) == 0
    assert (tmp_path / "ex.png").stat().st_size > 1000
    text = capsys.readouterr().out
    assert "mIoU" in text and "mBIoU" in text
    assert "base " in text and "model " in text
    res = json.loads(out.read_text())
    assert res["base"]["hq"] is False and res["model"]["hq"] is True
    for role in ("base", "model"):
        assert 0 <= res[role]["miou"] <= 1 and 0 <= res[role]["mbiou"] <= 1
        assert res[role]["n_masks"] >= 2


def test_train_hq_cli_writes_a_checkpoint_and_a_loadable_hq_model(tmp_path: Path) -> None:
    import samkit
    from samkit.cli import main

    base_p, _ = _save_models(tmp_path)
    export = tmp_path / "out.safetensors"
    argv = ["train-hq", "--init", base_p, "--out", str(tmp_path / "run"), "--steps", "2"]
    argv += ["--images-per-step", "1", "--export", str(export), "--no-progress"]
    assert main(argv) == 0
    assert (tmp_path / "run" / "last.pt").exists()
    model = samkit.load(export)
    assert model.is_hq
    base = samkit.load(base_p)
    for k, v in base.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


def test_training_needs_an_hq_model() -> None:
    from samkit.errors import ConfigError
    from samkit.train.hq_task import freeze_all_but_hq

    with pytest.raises(ConfigError):
        freeze_all_but_hq(base_sam())
    assert replace(TINY, hq=True).hq
