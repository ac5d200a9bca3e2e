"""Training: losses with known values, the prompt simulation, the schedule, resume-after-interrupt
and fine-tuning readers."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.data.folders import CocoDataset, ImageMaskFolder, open_folder_or_coco
from samkit.data.synthetic import SyntheticDataset
from samkit.models import SamConfig, build_sam
from samkit.train.loop import lr_factor
from samkit.train.losses import dice_loss, mask_iou, sam_loss, sigmoid_focal_loss
from samkit.train.prompts import error_points, noisy_boxes, round_plan, sample_points
from samkit.train.sam_task import SamTrainConfig, train

MICRO = SamConfig(
    encoder_embed_dim=32,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    image_size=64,
    window_size=2,
    prompt_embed_dim=32,
    decoder_num_heads=2,
    decoder_mlp_dim=64,
    iou_head_hidden_dim=32,
)


# -- losses -----------------------------------------------------------------------------------


def test_focal_loss_matches_hand_computed_value():
    # logit 0 -> p = 0.5; target 1: ce = ln 2, (1 - p_t)^2 = 0.25, alpha 0.25
    loss = sigmoid_focal_loss(torch.zeros(1, 1, 1), torch.ones(1, 1, 1))
    assert loss.item() == pytest.approx(math.log(2) * 0.25 * 0.25, rel=1e-6)
    # target 0: weight 1 - alpha
    loss = sigmoid_focal_loss(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1))
    assert loss.item() == pytest.approx(math.log(2) * 0.25 * 0.75, rel=1e-6)


def test_dice_loss_is_zero_for_a_perfect_mask_and_near_one_for_a_disjoint_one():
    t = torch.zeros(1, 8, 8)
    t[0, :4] = 1
    perfect = torch.where(t > 0, 50.0, -50.0)
    assert dice_loss(perfect, t).item() == pytest.approx(0, abs=1e-6)
    assert dice_loss(-perfect, t).item() == pytest.approx(1 - 1 / 65, abs=1e-4)


def test_sam_loss_backpropagates_only_the_lowest_loss_mask():
    t = torch.zeros(2, 8, 8)
    t[:, 2:6, 2:6] = 1
    good = torch.where(t > 0, 10.0, -10.0)
    logits = torch.stack([-good, good, torch.zeros_like(good)], 1).requires_grad_(True)
    out = sam_loss(logits, torch.zeros(2, 3, requires_grad=True), t)
    assert out.best.tolist() == [1, 1]
    assert out.iou.tolist() == [1.0, 1.0]
    out.total.backward()
    g = logits.grad.abs().flatten(2).sum(-1)
    assert (g[:, 0] == 0).all() and (g[:, 2] == 0).all() and (g[:, 1] > 0).all()


def test_iou_head_target_is_the_true_iou():
    t = torch.zeros(1, 4, 4)
    t[0, :2] = 1  # 8 pixels
    logits = torch.full((1, 1, 4, 4), -5.0)
    logits[0, 0, 0] = 5.0  # predicts 4 of them
    out = sam_loss(logits, torch.tensor([[0.5]]), t)
    assert out.iou.item() == pytest.approx(0.5)
    assert out.iou_mse.item() == pytest.approx(0.0)


def test_mask_iou_of_empty_masks_is_one():
    z = torch.zeros(1, 4, 4, dtype=torch.bool)
    assert mask_iou(z, z).item() == 1.0


# -- prompt simulation ------------------------------------------------------------------------


def _square_masks(n=8, s=32):
    m = torch.zeros(n, s, s, dtype=torch.bool)
    for i in range(n):
        m[i, 4 + i : 14 + i, 6 : 20 + i] = True
    return m


def test_first_points_fall_inside_the_ground_truth():
    gt = _square_masks()
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        xy, ok = sample_points(gt, g)
        assert ok.all()
        assert gt[torch.arange(len(gt)), xy[:, 1].long(), xy[:, 0].long()].all()


def test_corrective_points_fall_in_the_error_region_with_the_right_label():
    gt = _square_masks()
    pred = torch.roll(gt, shifts=3, dims=2)  # both false negatives and false positives
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        xy, label = error_points(pred, gt, g)
        r, x, y = torch.arange(len(gt)), xy[:, 0].long(), xy[:, 1].long()
        fn, fp = (gt & ~pred)[r, y, x], (pred & ~gt)[r, y, x]
        assert (fn | fp).all()
        assert torch.equal(label.bool(), fn)


def test_a_perfect_prediction_gets_a_positive_point_inside_the_object():
    gt = _square_masks()
    xy, label = error_points(gt.clone(), gt, torch.Generator().manual_seed(0))
    assert (label == 1).all()
    assert gt[torch.arange(len(gt)), xy[:, 1].long(), xy[:, 0].long()].all()


def test_noisy_boxes_stay_near_the_ground_truth_box():
    gt = _square_masks()
    b = noisy_boxes(gt, torch.Generator().manual_seed(0))
    exact = noisy_boxes(gt, torch.Generator().manual_seed(0), noise=0.0)
    assert torch.equal(exact[0], torch.tensor([6.0, 4.0, 19.0, 13.0]))  # x1/y1 inclusive
    assert (b - exact).abs().max() <= 20 and not torch.equal(b, exact)


def test_eleven_rounds_are_one_first_prompt_eight_points_and_two_mask_only():
    for seed in range(5):
        plan = round_plan(11, torch.Generator().manual_seed(seed))
        assert len(plan) == 11 and plan[0] == "first" and plan[-1] == "mask"
        assert plan.count("point") == 8 and plan.count("mask") == 2


# -- schedule, training, resume ---------------------------------------------------------------


def test_lr_warms_up_then_decays_tenfold_twice():
    cfg = SamTrainConfig(steps=900, warmup=100)
    assert lr_factor(0, cfg) == pytest.approx(0.01)
    assert lr_factor(99, cfg) == pytest.approx(1.0)
    assert lr_factor(599, cfg) == 1.0
    assert lr_factor(600, cfg) == pytest.approx(0.1)
    assert lr_factor(899, cfg) == pytest.approx(0.01)


def _run(tmp, steps, stop_after=None, rounds=3):
    torch.manual_seed(0)
    model = build_sam(MICRO)
    cfg = SamTrainConfig(
        steps=steps,
        images_per_step=2,
        masks_per_image=2,
        rounds=rounds,
        warmup=2,
        log_every=1,
        checkpoint_every_s=1e9,
        device="cpu",
    )
    data = SyntheticDataset(seed=1, size=64)
    state = train(model, data, cfg, tmp, stop_after=stop_after, progress=False)
    return model, state


def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    full, s_full = _run(tmp_path / "a", 4)
    _, s_cut = _run(tmp_path / "b", 4, stop_after=2)
    assert s_cut.step == 2 and (tmp_path / "b" / "last.pt").exists()
    resumed, s_res = _run(tmp_path / "b", 4)
    assert s_res.step == 4
    assert [h["step"] for h in s_res.history] == [1, 2, 3, 4]
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_training_reduces_the_loss_on_a_fixed_batch(tmp_path):
    torch.manual_seed(0)
    model = build_sam(MICRO)
    one_scene = [SyntheticDataset(seed=2, size=64)[0]]
    cfg = SamTrainConfig(
        steps=30,
        images_per_step=1,
        masks_per_image=2,
        rounds=1,
        warmup=1,
        lr=3e-3,
        log_every=5,
        checkpoint_every_s=1e9,
        device="cpu",
    )
    state = train(model, one_scene, cfg, tmp_path, progress=False)
    assert state.history[-1]["loss"] < 0.8 * state.history[0]["loss"]


def test_frozen_image_encoder_does_not_change(tmp_path):
    torch.manual_seed(0)
    model = build_sam(MICRO)
    before = {k: v.clone() for k, v in model.image_encoder.state_dict().items()}
    dec_before = model.mask_decoder.upscale_conv1.weight.clone()
    cfg = SamTrainConfig(
        steps=2,
        images_per_step=1,
        masks_per_image=2,
        rounds=2,
        warmup=1,
        freeze=("image_encoder",),
        checkpoint_every_s=1e9,
        device="cpu",
    )
    train(model, SyntheticDataset(seed=1, size=64), cfg, tmp_path, progress=False)
    for k, v in model.image_encoder.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not torch.equal(model.mask_decoder.upscale_conv1.weight, dec_before)


def test_a_checkpoint_of_the_trainer_before_the_shared_loop_resumes_exactly(tmp_path):
    full, _ = _run(tmp_path / "a", 4)
    _run(tmp_path / "b", 4, stop_after=2)
    ck_path = tmp_path / "b" / "last.pt"
    ck = torch.load(ck_path, weights_only=True)
    del ck["rng"]  # the old SAM trainer's layout: the same keys, no RNG state
    torch.save(ck, ck_path)
    resumed, state = _run(tmp_path / "b", 4)
    assert state.step == 4
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_bf16_autocast_trains_on_cpu_with_fp32_weights(tmp_path):
    torch.manual_seed(0)
    model = build_sam(MICRO)
    before = model.mask_decoder.iou_token.weight.clone()
    cfg = SamTrainConfig(
        steps=2,
        images_per_step=1,
        masks_per_image=2,
        rounds=3,
        warmup=1,
        log_every=1,
        checkpoint_every_s=1e9,
        device="cpu",
        precision="bf16",
    )
    state = train(model, SyntheticDataset(seed=1, size=64), cfg, tmp_path, progress=False)
    assert state.step == 2 and all(np.isfinite(h["loss"]) for h in state.history)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert not torch.equal(model.mask_decoder.iou_token.weight, before)


def test_training_refuses_unknown_or_missing_devices_before_any_work(tmp_path):
    from samkit.errors import ConfigError

    cfg = SamTrainConfig(steps=1, device="tpu")
    with pytest.raises(ConfigError, match="unknown device"):
        train(build_sam(MICRO), [], cfg, tmp_path, progress=False)
    if not torch.cuda.is_available():
        cfg = SamTrainConfig(steps=1, device="cuda:0")
        with pytest.raises(ConfigError, match="CUDA"):
            train(build_sam(MICRO), [], cfg, tmp_path, progress=False)
    assert not (tmp_path / "last.pt").exists()


# -- readers for users' data ------------------------------------------------------------------


def _write_pair(root, name, sub=""):
    img = np.zeros((40, 60, 3), np.uint8)
    img[10:30, 10:30] = 200
    lab = np.zeros((40, 60), np.uint8)
    lab[10:30, 10:30] = 1
    lab[5:15, 40:55] = 2
    (root / "images" / sub).mkdir(parents=True, exist_ok=True)
    (root / "masks" / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(root / "images" / sub / f"{name}.jpg")
    Image.fromarray(lab).save(root / "masks" / sub / f"{name}.png")


def test_image_mask_folder_splits_label_maps_into_masks(tmp_path):
    _write_pair(tmp_path, "a")
    _write_pair(tmp_path, "b")
    ds = open_folder_or_coco(tmp_path)
    assert isinstance(ds, ImageMaskFolder) and len(ds) == 2
    image, masks = ds[0]
    assert image.shape == (40, 60, 3) and masks.shape == (2, 40, 60)
    assert masks[0].sum() == 400 and masks[1].sum() == 150


def test_perseg_layout_reads_images_and_annotations_per_object(tmp_path):
    for obj in ("cat", "dog"):
        for i in range(2):
            img = np.full((32, 32, 3), 90, np.uint8)
            m = np.zeros((32, 32), np.uint8)
            m[4:20, 4:20] = 255
            (tmp_path / "Images" / obj).mkdir(parents=True, exist_ok=True)
            (tmp_path / "Annotations" / obj).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(tmp_path / "Images" / obj / f"{i:02d}.jpg")
            Image.fromarray(m).save(tmp_path / "Annotations" / obj / f"{i:02d}.png")
    ds = ImageMaskFolder(tmp_path)
    assert len(ds) == 4
    assert ds[3][1].shape == (1, 32, 32) and ds[3][1].sum() == 256


def test_coco_json_gives_one_mask_per_annotation(tmp_path):
    import json

    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(tmp_path / "x.png")
    coco = {
        "images": [{"id": 1, "file_name": "x.png", "height": 50, "width": 50}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "area": 100,
                "bbox": [10, 10, 10, 10],
                "segmentation": [[10, 10, 20, 10, 20, 20, 10, 20]],
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "area": 25,
                "bbox": [30, 30, 5, 5],
                "segmentation": [[30, 30, 35, 30, 35, 35, 30, 35]],
            },
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    ds = open_folder_or_coco(tmp_path / "ann.json")
    assert isinstance(ds, CocoDataset) and len(ds) == 1
    image, masks = ds[0]
    assert masks.shape == (2, 50, 50) and masks[0].sum() > masks[1].sum() > 0


def test_fine_tuning_runs_on_a_user_folder(tmp_path):
    _write_pair(tmp_path / "data", "a")
    torch.manual_seed(0)
    model = build_sam(MICRO)
    cfg = SamTrainConfig(
        steps=2,
        images_per_step=2,
        masks_per_image=2,
        rounds=2,
        warmup=1,
        checkpoint_every_s=1e9,
        device="cpu",
    )
    state = train(model, ImageMaskFolder(tmp_path / "data"), cfg, tmp_path / "run", progress=False)
    assert state.step == 2 and np.isfinite(state.history[-1]["loss"])
