"""Hugging Face transformers' SAM layout: read a ``SamModel.save_pretrained`` folder, write one.

A folder holds ``config.json`` (``model_type`` "sam": ``vision_config``,
``prompt_encoder_config``, ``mask_decoder_config``, each listing only what differs from
transformers' defaults) and ``model.safetensors`` (or ``pytorch_model.bin``, or shards with an
``.index.json``) with transformers' parameter names. The names are the official ones renamed by
transformers' ``convert_sam_to_hf.py``; ``hf_key`` is that renaming, and reading goes through
it backwards key by key from the model samkit builds, so every tensor is accounted for.
transformers itself is not needed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from samkit.errors import CheckpointError, ConfigError
from samkit.models import Sam, SamConfig, build_sam

# transformers' convert_sam_to_hf.py KEYS_TO_MODIFY_MAPPING: substring renames, in this order.
_RENAMES = [
    ("iou_prediction_head.layers.0", "iou_prediction_head.proj_in"),
    ("iou_prediction_head.layers.1", "iou_prediction_head.layers.0"),
    ("iou_prediction_head.layers.2", "iou_prediction_head.proj_out"),
    ("mask_decoder.output_upscaling.0", "mask_decoder.upscale_conv1"),
    ("mask_decoder.output_upscaling.1", "mask_decoder.upscale_layer_norm"),
    ("mask_decoder.output_upscaling.3", "mask_decoder.upscale_conv2"),
    ("mask_downscaling.0", "mask_embed.conv1"),
    ("mask_downscaling.1", "mask_embed.layer_norm1"),
    ("mask_downscaling.3", "mask_embed.conv2"),
    ("mask_downscaling.4", "mask_embed.layer_norm2"),
    ("mask_downscaling.6", "mask_embed.conv3"),
    ("point_embeddings", "point_embed"),
    ("pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"),
    ("image_encoder", "vision_encoder"),
    ("neck.0", "neck.conv1"),
    ("neck.1", "neck.layer_norm1"),
    ("neck.2", "neck.conv2"),
    ("neck.3", "neck.layer_norm2"),
    ("patch_embed.proj", "patch_embed.projection"),
    (".norm", ".layer_norm"),
    ("blocks", "layers"),
]
_HYPER_MLP = re.compile(r".*\.output_hypernetworks_mlps\.(\d+)\.layers\.(\d+)\..*")
_HYPER_RENAMES = {
    0: ("layers.0", "proj_in"),
    1: ("layers.1", "layers.0"),
    2: ("layers.2", "proj_out"),
}
# The prompt encoder shares the positional encoding with the model; save_pretrained keeps one.
SHARED_PE = "shared_image_embedding.positional_embedding"
PROMPT_PE = "prompt_encoder.shared_embedding.positional_embedding"

# transformers' defaults: config.json lists only the values that differ from these.
_VISION_DEFAULTS: dict[str, Any] = {
    "hidden_size": 768,
    "output_channels": 256,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 1024,
    "patch_size": 16,
    "mlp_ratio": 4.0,
    "window_size": 14,
    "global_attn_indexes": [2, 5, 8, 11],
    "num_pos_feats": 128,
    "mlp_dim": None,
}
_PROMPT_DEFAULTS: dict[str, Any] = {
    "hidden_size": 256,
    "image_size": 1024,
    "patch_size": 16,
    "mask_input_channels": 16,
    "num_point_embeddings": 4,
}
_DECODER_DEFAULTS: dict[str, Any] = {
    "hidden_size": 256,
    "mlp_dim": 2048,
    "num_hidden_layers": 2,
    "num_attention_heads": 8,
    "num_multimask_outputs": 3,
    "iou_head_depth": 3,
    "iou_head_hidden_dim": 256,
}


def hf_key(key: str) -> str:
    """An official parameter name -> transformers' name for it (convert_sam_to_hf.py)."""
    for old, new in _RENAMES:
        if old in key:
            key = key.replace(old, new)
    m = _HYPER_MLP.match(key)
    if m and int(m.group(2)) in _HYPER_RENAMES:
        key = key.replace(*_HYPER_RENAMES[int(m.group(2))])
    return key


def is_hf_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder with a transformers ``config.json`` of model_type "sam"."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("model_type") == "sam"
    except (ValueError, AttributeError):
        return False


def config_from_hf(hf: dict[str, Any]) -> SamConfig:
    """transformers' SamConfig (config.json as a dict) -> samkit's SamConfig."""
    if hf.get("model_type") != "sam":
        raise CheckpointError(
            f"config.json has model_type {hf.get('model_type')!r}; samkit reads transformers' "
            "SAM folders (model_type 'sam'); convert other models to the official layout first"
        )
    v = {**_VISION_DEFAULTS, **(hf.get("vision_config") or {})}
    p = {**_PROMPT_DEFAULTS, **(hf.get("prompt_encoder_config") or {})}
    d = {**_DECODER_DEFAULTS, **(hf.get("mask_decoder_config") or {})}
    if d["iou_head_depth"] != 3 or p["num_point_embeddings"] != 4:
        raise CheckpointError(
            "config.json asks for iou_head_depth "
            f"{d['iou_head_depth']} and {p['num_point_embeddings']} point embeddings; samkit "
            "builds SAM's 3 and 4"
        )
    mlp_ratio = v["mlp_dim"] / v["hidden_size"] if v["mlp_dim"] else v["mlp_ratio"]
    return SamConfig(
        encoder_embed_dim=v["hidden_size"],
        encoder_depth=v["num_hidden_layers"],
        encoder_num_heads=v["num_attention_heads"],
        encoder_global_attn_indexes=tuple(v["global_attn_indexes"]),
        image_size=v["image_size"],
        patch_size=v["patch_size"],
        window_size=v["window_size"],
        mlp_ratio=float(mlp_ratio),
        prompt_embed_dim=d["hidden_size"],
        decoder_depth=d["num_hidden_layers"],
        decoder_num_heads=d["num_attention_heads"],
        decoder_mlp_dim=d["mlp_dim"],
        mask_in_chans=p["mask_input_channels"],
        num_multimask_outputs=d["num_multimask_outputs"],
        iou_head_hidden_dim=d["iou_head_hidden_dim"],
    )


def config_to_hf(c: SamConfig) -> dict[str, Any]:
    """samkit's SamConfig -> transformers' config.json (every value written out)."""
    _check_plain_sam(c)
    return {
        "model_type": "sam",
        "architectures": ["SamModel"],
        "vision_config": {
            **_VISION_DEFAULTS,
            "hidden_size": c.encoder_embed_dim,
            "output_channels": c.prompt_embed_dim,
            "num_hidden_layers": c.encoder_depth,
            "num_attention_heads": c.encoder_num_heads,
            "image_size": c.image_size,
            "patch_size": c.patch_size,
            "mlp_ratio": c.mlp_ratio,
            "mlp_dim": int(c.encoder_embed_dim * c.mlp_ratio),
            "window_size": c.window_size,
            "global_attn_indexes": list(c.encoder_global_attn_indexes),
            "num_pos_feats": c.prompt_embed_dim // 2,
        },
        "prompt_encoder_config": {
            **_PROMPT_DEFAULTS,
            "hidden_size": c.prompt_embed_dim,
            "image_size": c.image_size,
            "patch_size": c.patch_size,
            "mask_input_channels": c.mask_in_chans,
        },
        "mask_decoder_config": {
            **_DECODER_DEFAULTS,
            "hidden_size": c.prompt_embed_dim,
            "mlp_dim": c.decoder_mlp_dim,
            "num_hidden_layers": c.decoder_depth,
            "num_attention_heads": c.decoder_num_heads,
            "num_multimask_outputs": c.num_multimask_outputs,
            "iou_head_hidden_dim": c.iou_head_hidden_dim,
        },
    }


def _check_plain_sam(c: SamConfig) -> None:
    if c.hq or c.tiny_vit is not None:
        raise ConfigError(
            "transformers' SamModel layout holds SAM with its ViT encoder; HQ-SAM and TinyViT "
            "models can be written in the official layout only (--to official)"
        )


def state_from_hf(hf_state: dict[str, torch.Tensor], config: SamConfig) -> dict[str, torch.Tensor]:
    """transformers' tensors -> the official state dict of ``config``. Every official key must
    find its tensor and every transformers tensor must be used (CheckpointError otherwise)."""
    hf_state = dict(hf_state)
    if SHARED_PE in hf_state:
        hf_state.setdefault(PROMPT_PE, hf_state[SHARED_PE])
    with torch.device("meta"):
        names = list(build_sam(config).state_dict())
    state, missing = {}, []
    for k in names:
        h = hf_key(k)
        if h in hf_state:
            state[k] = hf_state[h]
        else:
            missing.append(h)
    used = {hf_key(k) for k in names} | {SHARED_PE}
    unexpected = sorted(set(hf_state) - used)
    if missing or unexpected:
        parts = ["the Hugging Face weights do not fit the SAM described by config.json:"]
        if missing:
            parts.append(f"{len(missing)} missing tensors (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {', '.join(unexpected[:3])})")
        raise CheckpointError(" ".join(parts))
    return state


def state_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An official state dict -> transformers' names (the shared positional encoding once, as
    ``save_pretrained`` writes it)."""
    out = {hf_key(k): v for k, v in state.items() if k not in ("pixel_mean", "pixel_std")}
    out[SHARED_PE] = out.pop(PROMPT_PE)
    return out


def read_hf_folder(folder: str | os.PathLike) -> tuple[dict[str, torch.Tensor], SamConfig]:
    """A ``SamModel.save_pretrained`` folder -> (official state dict, configuration)."""
    from samkit.checkpoints import read_state_dict

    d = Path(folder)
    if not (d / "config.json").is_file():
        raise CheckpointError(
            f"{d} is a folder without config.json; pass a checkpoint file, or a Hugging Face "
            "SAM folder (config.json + model.safetensors)"
        )
    try:
        hf_config = json.loads((d / "config.json").read_text())
    except ValueError as e:
        raise CheckpointError(f"{d / 'config.json'} is not JSON ({e})") from None
    config = config_from_hf(hf_config)
    files = [d / "model.safetensors", d / "pytorch_model.bin"]
    weights = next((f for f in files if f.is_file()), None)
    hf_state: dict[str, torch.Tensor] = {}
    if weights is not None:
        hf_state = read_state_dict(weights)[0]
    else:
        index = next(
            (d / f"{f.name}.index.json" for f in files if (d / f"{f.name}.index.json").is_file()),
            None,
        )
        if index is None:
            raise CheckpointError(
                f"{d} has config.json but no model.safetensors, pytorch_model.bin or sharded "
                "index; download the weights into the folder too"
            )
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            hf_state.update(read_state_dict(d / shard)[0])
    return state_from_hf(hf_state, config), config


def save_hf_folder(model: Sam, folder: str | os.PathLike) -> Path:
    """Write ``model`` as transformers' ``SamModel.from_pretrained`` reads it: config.json and
    model.safetensors (metadata ``format: pt``)."""
    from safetensors.torch import save_file

    if model.config is None:
        raise ConfigError("the model has no configuration (built by hand); build it with build_sam")
    cfg = config_to_hf(model.config)
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state_to_hf(state), str(d / "model.safetensors"), metadata={"format": "pt"})
    (d / "config.json").write_text(json.dumps(cfg, indent=2))
    return d
