"""Precision: bf16 casts the image encoder once at load, everything users see stays float32, and
masks agree with fp32. Runs on any CPU (bf16 is correct even where it is slow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import synthetic_image

import samkit
from samkit.checkpoints import save_safetensors
from samkit.errors import ConfigError
from samkit.models import SamConfig, build_sam

SMALL = SamConfig(
    encoder_embed_dim=96,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    image_size=128,
    window_size=4,
    prompt_embed_dim=64,
    decoder_mlp_dim=128,
    iou_head_hidden_dim=64,
)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("precision") / "small.safetensors"
    save_safetensors(build_sam(SMALL), path)
    return str(path)


def test_bf16_casts_the_encoder_once_and_keeps_the_rest_float32(weights: str) -> None:
    model = samkit.load(weights, device="cpu", precision="bf16")
    assert model.encoder_dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in model.image_encoder.parameters())
    assert all(p.dtype == torch.float32 for p in model.mask_decoder.parameters())
    assert all(p.dtype == torch.float32 for p in model.prompt_encoder.parameters())
    pred = samkit.Predictor(model)
    pred.set_image(synthetic_image(100, 140, seed=1))
    assert pred.embedding.features.embeddings.dtype == torch.float32
    res = pred.predict(points=[[70, 50]], labels=[1])
    assert res.scores.dtype == np.float32 and res.logits.dtype == np.float32
    assert res.masks.dtype == bool and res.masks.shape == (3, 100, 140)


def test_bf16_masks_agree_with_fp32(weights: str) -> None:
    image = synthetic_image(120, 160, seed=2)
    out = {}
    for precision in ("fp32", "bf16"):
        pred = samkit.Predictor(samkit.load(weights, device="cpu", precision=precision))
        pred.set_image(image)
        out[precision] = pred.predict(points=[[80, 60], [30, 40]], labels=[1, 0])
    a, b = out["fp32"], out["bf16"]
    inter = np.logical_and(a.masks, b.masks).sum((1, 2))
    union = np.logical_or(a.masks, b.masks).sum((1, 2))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    assert iou.min() >= 0.95, iou
    assert np.abs(a.scores - b.scores).max() < 0.05


def test_fp32_is_the_library_default_and_bad_names_fail_before_reading(weights: str) -> None:
    assert samkit.load(weights, device="cpu").encoder_dtype == torch.float32
    with pytest.raises(ConfigError, match="unknown precision"):
        samkit.load("/nonexistent.pth", precision="fp64")
    with pytest.raises(ConfigError, match="fp16 is not supported on the CPU"):
        samkit.load(weights, device="cpu", precision="fp16")
