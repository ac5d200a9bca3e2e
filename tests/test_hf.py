"""Hugging Face SAM folders: transformers' parameter names and config.json read and written
without transformers; official -> hf -> official is exact; samkit.load(folder) predicts as the
official model with the same weights."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import synthetic_image
from official import random_state_dict

import samkit
from samkit.errors import CheckpointError
from samkit.hf import config_from_hf, hf_key, read_hf_folder, save_hf_folder, state_to_hf
from samkit.models import build_sam
from samkit.predictor import Predictor


@pytest.mark.parametrize(
    "official,hf",
    [
        ("image_encoder.blocks.0.norm1.weight", "vision_encoder.layers.0.layer_norm1.weight"),
        ("image_encoder.blocks.3.attn.qkv.weight", "vision_encoder.layers.3.attn.qkv.weight"),
        ("image_encoder.blocks.1.attn.rel_pos_h", "vision_encoder.layers.1.attn.rel_pos_h"),
        ("image_encoder.patch_embed.proj.weight", "vision_encoder.patch_embed.projection.weight"),
        ("image_encoder.neck.1.weight", "vision_encoder.neck.layer_norm1.weight"),
        ("image_encoder.neck.2.weight", "vision_encoder.neck.conv2.weight"),
        (
            "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
            "prompt_encoder.shared_embedding.positional_embedding",
        ),
        ("prompt_encoder.point_embeddings.2.weight", "prompt_encoder.point_embed.2.weight"),
        ("prompt_encoder.mask_downscaling.4.bias", "prompt_encoder.mask_embed.layer_norm2.bias"),
        (
            "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight",
            "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight",
        ),
        (
            "mask_decoder.transformer.layers.1.norm3.bias",
            "mask_decoder.transformer.layers.1.layer_norm3.bias",
        ),
        (
            "mask_decoder.transformer.norm_final_attn.weight",
            "mask_decoder.transformer.layer_norm_final_attn.weight",
        ),
        ("mask_decoder.output_upscaling.1.weight", "mask_decoder.upscale_layer_norm.weight"),
        (
            "mask_decoder.output_hypernetworks_mlps.2.layers.1.weight",
            "mask_decoder.output_hypernetworks_mlps.2.layers.0.weight",
        ),
        (
            "mask_decoder.output_hypernetworks_mlps.0.layers.2.bias",
            "mask_decoder.output_hypernetworks_mlps.0.proj_out.bias",
        ),
        (
            "mask_decoder.iou_prediction_head.layers.0.weight",
            "mask_decoder.iou_prediction_head.proj_in.weight",
        ),
    ],
)
def test_official_names_map_to_transformers_names(official, hf) -> None:  # type: ignore[no-untyped-def]
    assert hf_key(official) == hf


@pytest.fixture(scope="module")
def official_model(small_cfg):  # type: ignore[no-untyped-def]
    cfg = replace(small_cfg, image_size=256, window_size=8)
    model = build_sam(cfg)
    model.load_state_dict(random_state_dict(model, seed=11))
    return model


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory, official_model):  # type: ignore[no-untyped-def]
    """A folder as SamModel.save_pretrained writes it: config.json with only the values that
    differ from transformers' defaults, model.safetensors with transformers' names."""
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("hf-sam")
    config = {
        "architectures": ["SamModel"],
        "model_type": "sam",
        "initializer_range": 0.02,
        "vision_config": {
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "global_attn_indexes": [1],
            "image_size": 256,
            "window_size": 8,
            "mlp_dim": 256,
            "model_type": "sam_vision_model",
        },
        "prompt_encoder_config": {"image_size": 256, "model_type": ""},
        "mask_decoder_config": {"model_type": ""},
    }
    (d / "config.json").write_text(json.dumps(config))
    sd = {k: v.contiguous() for k, v in official_model.state_dict().items()}
    save_file(state_to_hf(sd), str(d / "model.safetensors"), metadata={"format": "pt"})
    return d


def test_config_json_with_transformers_defaults_gives_the_architecture(
    hf_folder, official_model
) -> None:  # type: ignore[no-untyped-def]
    cfg = config_from_hf(json.loads((hf_folder / "config.json").read_text()))
    assert cfg == official_model.config


def test_load_reads_a_hugging_face_folder_and_predicts_as_the_official_weights(
    hf_folder, official_model
) -> None:  # type: ignore[no-untyped-def]
    loaded = samkit.load(hf_folder, device="cpu")
    image = synthetic_image(200, 256, seed=2)
    a, b = Predictor(loaded), Predictor(official_model)
    a.set_image(image)
    b.set_image(image)
    ra = a.predict([[100, 90]], [1])
    rb = b.predict([[100, 90]], [1])
    assert np.array_equal(ra.logits, rb.logits)
    assert np.array_equal(ra.scores, rb.scores)


def test_round_trip_official_hf_official_is_exact(tmp_path, official_model) -> None:  # type: ignore[no-untyped-def]
    save_hf_folder(official_model, tmp_path / "hf")
    state, cfg = read_hf_folder(tmp_path / "hf")
    assert cfg == official_model.config
    want = official_model.state_dict()
    assert set(state) == set(want)
    assert all(torch.equal(state[k], want[k]) for k in want)


def test_convert_cli_writes_both_layouts(tmp_path, hf_folder, official_model) -> None:  # type: ignore[no-untyped-def]
    from samkit.cli import main

    assert main(["convert", str(hf_folder), "--to", "official", "-o", str(tmp_path / "m.pth")]) == 0
    sd = torch.load(tmp_path / "m.pth", weights_only=True)
    assert all(torch.equal(sd[k], v) for k, v in official_model.state_dict().items())
    assert main(["convert", str(tmp_path / "m.pth"), "--to", "hf", "-o", str(tmp_path / "hf")]) == 0
    again = samkit.load(tmp_path / "hf")
    assert all(torch.equal(again.state_dict()[k], v) for k, v in sd.items())


def test_hf_folder_with_a_missing_tensor_names_it(tmp_path, official_model) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import load_file, save_file

    save_hf_folder(official_model, tmp_path)
    sd = load_file(str(tmp_path / "model.safetensors"))
    del sd["mask_decoder.iou_token.weight"]
    save_file(sd, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="mask_decoder.iou_token.weight"):
        samkit.load(tmp_path)


def test_folder_without_config_json_says_what_it_takes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CheckpointError, match="config.json"):
        samkit.load(tmp_path)


def test_hq_models_are_refused_for_the_hf_layout(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from samkit.errors import ConfigError

    with pytest.raises(ConfigError, match="official layout"):
        save_hf_folder(build_sam("hq_tiny"), tmp_path)
