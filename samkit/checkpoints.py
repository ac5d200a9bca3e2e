"""The one checkpoint-loading path (the zoo and its downloads live in ``samkit.zoo``).

``load(source)`` accepts a zoo name or a path to an official-layout ``.pth`` (SAM, HQ-SAM,
MobileSAM, Light HQ-SAM) or a ``.safetensors`` file. The architecture is read off the weights'
shapes, so any checkpoint in the official layout loads without naming a configuration. ``.pth``
files are opened with ``torch.load(weights_only=True)``: a pickle that tries to run code is
refused, never executed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

import torch

from samkit.errors import CheckpointError
from samkit.models import CONFIGS, Sam, SamConfig, build_sam
from samkit.models.tiny_vit import TinyViTConfig
from samkit.zoo import ZOO, ensure_downloaded


def load(
    source: str | os.PathLike,
    model_type: str | None = None,
    device: str = "auto",
    precision: str = "fp32",
) -> Sam:
    """Build a model from a zoo name or a checkpoint path, in eval mode on ``device``.

    The architecture is inferred from the weights; ``model_type`` ("vit_b", "hq_vit_l", ...)
    forces a named configuration instead (and then the weights must match it exactly).
    device: auto | cpu | cuda | cuda:N | mps; precision: fp32 | auto | bf16 | fp16 — "auto"
    as ``samkit.runtime`` detects it. Reduced precision casts the image encoder's weights once;
    the rest of the model and every output stay float32.
    """
    from samkit import runtime

    rt = runtime.resolve(device, precision)  # a bad device or precision fails before reading
    src = str(source)
    if src in ZOO:
        path = ensure_downloaded(ZOO[src])
    else:
        path = Path(src).expanduser()
        if not path.exists():
            names = ", ".join(ZOO)
            raise CheckpointError(f"'{src}' is neither a model name ({names}) nor an existing file")
    if path.is_dir():  # a Hugging Face SAM folder (config.json + weights): samkit.hf
        from samkit.hf import read_hf_folder

        state, meta_config = read_hf_folder(path)
    else:
        state, meta_config = read_state_dict(path)
    if model_type is not None:
        if model_type not in CONFIGS:
            raise CheckpointError(
                f"unknown model_type '{model_type}'; choose one of {', '.join(CONFIGS)}"
            )
        config = CONFIGS[model_type]
    elif meta_config is not None:
        config = meta_config
    else:
        config = infer_config(state, path)
    model = build_sam(config)
    _load_strict(model, state, path, config)
    if not path.is_dir():
        model.generator_defaults = read_generator_defaults(path)
    model = model.to(rt.device).eval()
    if rt.dtype != torch.float32:
        model.set_precision(rt.dtype)
    return model


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], SamConfig | None]:
    """Read tensors from .safetensors or .pth (weights_only). Returns the state dict and the
    configuration stored in safetensors metadata, if any."""
    if path.is_dir():
        raise CheckpointError(
            f"{path} is a folder; pass the checkpoint file inside it (samkit.load also takes a "
            "Hugging Face SAM folder: config.json + model.safetensors)"
        )
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes); download it again")
    with open(path, "rb") as f:
        head = f.read(8)
    if path.suffix == ".safetensors" or (len(head) == 8 and _looks_like_safetensors(path)):
        return _read_safetensors(path)
    return _read_pth(path), None


def _looks_like_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return 2 <= n < 100_000_000 and f.read(1) == b"{"


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], SamConfig | None]:
    """The tensors and the ``samkit_config`` metadata of a safetensors file. The header and the
    configuration are checked against each other before any tensor is allocated, so a small
    file cannot make samkit build a huge model."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    def unreadable(why: str) -> CheckpointError:
        return CheckpointError(
            f"{path} is not a readable safetensors file ({why}); it may be truncated or "
            "corrupt — download or copy it again"
        )

    def bad_config(why: str) -> CheckpointError:
        return CheckpointError(
            f"{path} has a 'samkit_config' metadata entry that {why}; fix or remove that "
            "entry (samkit then infers the architecture from the weights), or re-save the "
            "model with samkit.checkpoints.save_safetensors"
        )

    size = path.stat().st_size
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if size < 8 or n > min(size - 8, 100 * 2**20):  # 100 MiB: safetensors' own cap
            raise unreadable(f"its header claims {n} bytes in a file of {size}")
        try:
            header = json.loads(f.read(n))
        except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise unreadable(f"the header is not JSON: {e}") from None
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__") or {}, dict):
        raise unreadable("the header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    config = None
    if "samkit_config" in meta:
        text = meta["samkit_config"]
        if not isinstance(text, str) or len(text) > 64 * 2**10:
            raise bad_config("is not a JSON text of at most 64 KiB")
        try:
            config = SamConfig.from_dict(json.loads(text))
            d = config.to_dict()
            tiny = d.pop("tiny_vit")
            for name, value in [*d.items(), *(tiny or {}).items()]:
                if name == "hq":
                    ok = isinstance(value, bool)
                else:
                    ok = isinstance(value, (int, float, list)) and not isinstance(value, bool)
                if not ok:
                    raise TypeError(f"{name} = {value!r}")
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise bad_config(f"is not a valid configuration ({type(e).__name__}: {e})") from None
        # The configuration must describe exactly the tensors in the file. Checked on the
        # meta device (no memory) once the depths match the file, so the build stays small.
        blocks = _encoder_depths(header)
        layers = {
            k.split(".")[3] for k in header if k.startswith("mask_decoder.transformer.layers.")
        }
        if config.tiny_vit is None:
            says, depths = f"encoder_depth={config.encoder_depth}", [config.encoder_depth]
            holds = f"{blocks[0]} encoder blocks" if len(blocks) == 1 else f"{blocks} blocks"
        else:
            depths = list(config.tiny_vit.depths)
            says, holds = f"TinyViT depths={depths}", f"TinyViT stages of {blocks} blocks"
        if (depths, config.decoder_depth) != (blocks, len(layers)):
            raise bad_config(
                f"says {says}, decoder_depth={config.decoder_depth} but the file holds "
                f"{holds} and {len(layers)} decoder layers"
            )
        try:
            with torch.device("meta"):
                expected = build_sam(config).state_dict()
        except Exception as e:  # any nonsense number fails somewhere in the modules
            raise bad_config(f"cannot be built ({type(e).__name__}: {e})") from None
        for k, t in expected.items():
            have = header.get(k, {}).get("shape") if isinstance(header.get(k), dict) else None
            if have != list(t.shape):
                raise bad_config(
                    f"does not describe the weights in the file (e.g. {k}: the configuration "
                    f"needs shape {tuple(t.shape)}, the file has "
                    f"{'none' if have is None else tuple(have)})"
                )
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise unreadable(str(e)) from None
    return state, config


def _encoder_depths(keys: Iterable[str]) -> list[int]:
    """Blocks of the image encoder in a state dict's keys: [N] for a ViT, one per stage for a
    TinyViT."""
    vit: set[str] = set()
    stages: dict[int, set[str]] = {}
    for k in keys:
        if k.startswith("image_encoder.blocks."):
            vit.add(k.split(".")[2])
        elif m := re.match(r"image_encoder\.layers\.(\d+)\.blocks\.(\d+)\.", k):
            stages.setdefault(int(m.group(1)), set()).add(m.group(2))
    return [len(stages[i]) for i in sorted(stages)] if stages else [len(vit)]


def _read_pth(path: Path) -> dict[str, torch.Tensor]:
    import pickle
    import zipfile

    # torch.save writes a zip archive, or (legacy format) a pickle that starts with its magic
    # number. Anything else is not a checkpoint, whatever the unpickler would say about it.
    with open(path, "rb") as f:
        head = f.read(15)
    legacy = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)[:15]
    if head != legacy and not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (neither torch.save's zip format nor its "
            "legacy format); give a .pth written by torch.save, a .safetensors file or a "
            "model name (see `samkit models`)"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e) or "weights_only" in str(e):
            raise CheckpointError(
                f"refused to load {path}: it contains pickled code or objects other than "
                "tensors, and samkit never executes code from a checkpoint. If you trust the "
                "file, convert it to a plain state dict or to safetensors yourself."
            ) from None
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({e})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as e:
        # torch's unpickler fails in many ways on bytes that are not a checkpoint.
        raise CheckpointError(
            f"{path} could not be read as a checkpoint ({type(e).__name__}: {e}); it is "
            "probably truncated or not a checkpoint — download it again"
        ) from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return obj


def infer_config(state: dict[str, torch.Tensor], path: Path | str = "checkpoint") -> SamConfig:
    """Read the architecture off the tensor shapes of an official-layout state dict."""
    tiny = infer_tiny_vit(state)
    encoder_keys = [k for k in state if k.startswith("image_encoder.")]
    if tiny is None and encoder_keys and "image_encoder.patch_embed.proj.weight" not in state:
        raise CheckpointError(
            f"{path}: samkit does not know this checkpoint's image encoder (its keys begin "
            f"{', '.join(encoder_keys[:4])}). samkit reads SAM's ViT "
            "(image_encoder.patch_embed.proj.weight, image_encoder.blocks.N...) and TinyViT as "
            "in MobileSAM and Light HQ-SAM (image_encoder.layers.0.blocks.0.conv1.c.weight, "
            "...); other encoders (EfficientSAM, EdgeSAM, SAM 2's Hiera, ...) are not supported"
        )
    try:
        if tiny is not None:
            # TinyViT weights do not fix the input size; the official models use 1024 px.
            encoder: dict = {
                "tiny_vit": tiny["config"],
                "patch_size": tiny["config"].stride,
                "prompt_embed_dim": tiny["out_chans"],
            }
        else:
            encoder = _infer_vit(state)
        mask_in = state["prompt_encoder.mask_downscaling.3.weight"].shape[0]
        dec_depth = len(
            {
                m.group(1)
                for k in state
                if (m := re.match(r"mask_decoder\.transformer\.layers\.(\d+)\.", k))
            }
        )
        dec_mlp = state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0]
        n_mask = state["mask_decoder.mask_tokens.weight"].shape[0]
        iou_hidden = state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0]
    except KeyError as e:
        raise CheckpointError(
            f"{path} is not a SAM checkpoint in the official layout: key {e} is missing. "
            f"It has {len(state)} tensors, e.g. {', '.join(list(state)[:3])}"
        ) from None
    return SamConfig(
        **encoder,
        decoder_depth=dec_depth,
        decoder_mlp_dim=dec_mlp,
        mask_in_chans=mask_in,
        num_multimask_outputs=n_mask - 1,
        iou_head_hidden_dim=iou_hidden,
        hq="mask_decoder.hf_token.weight" in state,
    )


def _infer_vit(state: dict[str, torch.Tensor]) -> dict:
    """SamConfig fields of a ViT image encoder, from its tensor shapes."""
    pw = state["image_encoder.patch_embed.proj.weight"]
    pos = state["image_encoder.pos_embed"]
    embed_dim, patch = pw.shape[0], pw.shape[2]
    grid = pos.shape[1]
    block_ids = sorted(
        {int(m.group(1)) for k in state if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))}
    )
    depth = len(block_ids)
    rel = [state[f"image_encoder.blocks.{i}.attn.rel_pos_h"] for i in block_ids]
    head_dim = rel[0].shape[1]
    global_idx = tuple(i for i, r in zip(block_ids, rel) if r.shape[0] == 2 * grid - 1)
    windowed = [r.shape[0] for i, r in zip(block_ids, rel) if i not in global_idx]
    window = (windowed[0] + 1) // 2 if windowed else 14
    mlp_ratio = state["image_encoder.blocks.0.mlp.lin1.weight"].shape[0] / embed_dim
    prompt_dim = state["image_encoder.neck.0.weight"].shape[0]
    return {
        "encoder_embed_dim": embed_dim,
        "encoder_depth": depth,
        "encoder_num_heads": embed_dim // head_dim,
        "encoder_global_attn_indexes": global_idx,
        "image_size": grid * patch,
        "patch_size": patch,
        "window_size": window,
        "mlp_ratio": mlp_ratio,
        "prompt_embed_dim": prompt_dim,
    }


def _load_strict(model: Sam, state: dict[str, torch.Tensor], path: Path, config: SamConfig) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = [f"{path} does not fit the {_describe(config)} architecture:"]
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} shape mismatches (e.g. {k}: checkpoint "
                f"{tuple(state[k].shape)} vs model {tuple(own[k].shape)})"
            )
        parts.append("Drop model_type to let samkit infer the architecture from the weights.")
        raise CheckpointError(" ".join(parts))
    model.load_state_dict(state, strict=True)


def _describe(c: SamConfig) -> str:
    hq = "HQ-SAM" if c.hq else "SAM"
    if c.tiny_vit is not None:
        t = c.tiny_vit
        return (
            f"{hq} with a TinyViT encoder (widths {list(t.embed_dims)}, depths "
            f"{list(t.depths)}, {c.image_size} px)"
        )
    return (
        f"{hq} (width {c.encoder_embed_dim}, depth {c.encoder_depth}, "
        f"{c.image_size} px, global blocks {list(c.encoder_global_attn_indexes)})"
    )


GENERATOR_KEY = "samkit_generator"
# The generator options a checkpoint may recommend, with their valid ranges.
_GENERATOR_OPTIONS = {
    "pred_iou_thresh": (0.0, 1.0),
    "stability_score_thresh": (0.0, 1.0),
    "stability_score_offset": (1e-6, 100.0),
    "box_nms_thresh": (1e-6, 1.0),
    "points_per_side": (1, 256),
    "min_mask_region_area": (0, 1e9),
}


def read_generator_defaults(path: Path) -> dict[str, float | int]:
    """The ``samkit_generator`` metadata of a safetensors file (MaskGenerator settings that
    suit the weights), validated: known option names, numbers in range; {} for other files."""
    if path.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        text = (f.metadata() or {}).get(GENERATOR_KEY)
    if text is None:
        return {}
    try:
        opts = json.loads(text)
    except ValueError:
        opts = None
    bad = not isinstance(opts, dict) or any(
        k not in _GENERATOR_OPTIONS
        or isinstance(v, bool)
        or not isinstance(v, (int, float))
        or not _GENERATOR_OPTIONS[k][0] <= v <= _GENERATOR_OPTIONS[k][1]
        for k, v in (opts or {}).items()
    )
    if bad:
        raise CheckpointError(
            f"{path} has a '{GENERATOR_KEY}' metadata entry that is not a JSON object of "
            f"generator options ({', '.join(_GENERATOR_OPTIONS)}) with values in range; fix or "
            "remove that entry"
        )
    return dict(opts)


def save_safetensors(
    model: Sam, path: str | os.PathLike, extra: dict[str, str] | None = None
) -> None:
    """Save weights in the official key layout, with the configuration in the metadata."""
    from safetensors.torch import save_file

    meta = {"samkit_config": json.dumps(model.config.to_dict())}  # type: ignore[union-attr]
    if model.generator_defaults:
        meta[GENERATOR_KEY] = json.dumps(model.generator_defaults)
    meta.update(extra or {})
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(path), metadata=meta)


def infer_tiny_vit(state: dict[str, torch.Tensor], prefix: str = "image_encoder.") -> dict | None:
    """Recognise a TinyViT encoder in an official-layout state dict and read its numbers.

    Returns None when the encoder is not a TinyViT, else ``{"config": TinyViTConfig,
    "out_chans": neck width}`` (the keyword arguments of ``build_tiny_vit_encoder`` except the
    image size, which TinyViT weights do not fix; the official models use 1024).
    """
    p = prefix
    if f"{p}layers.0.blocks.0.conv1.c.weight" not in state:
        return None
    blocks: dict[int, set[int]] = {}
    for k in state:
        if m := re.match(rf"{re.escape(p)}layers\.(\d+)\.blocks\.(\d+)\.", k):
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    conv1 = state[f"{p}layers.0.blocks.0.conv1.c.weight"]
    dims, heads, windows = [conv1.shape[1]], [], []
    for i in sorted(blocks)[1:]:
        biases = state[f"{p}layers.{i}.blocks.0.attn.attention_biases"]  # nH x ws*ws
        dims.append(state[f"{p}layers.{i}.blocks.0.attn.proj.weight"].shape[0])
        heads.append(biases.shape[0])
        windows.append(round(biases.shape[1] ** 0.5))
    # Stage 0 has no attention; the official models give it stage 1's head width and window.
    heads.insert(0, max(1, dims[0] // (dims[1] // heads[0])))
    windows.insert(0, windows[0])
    fc1 = state[f"{p}layers.1.blocks.0.mlp.fc1.weight"]
    head = state.get(f"{p}head.weight")
    config = TinyViTConfig(
        embed_dims=tuple(dims),
        depths=tuple(len(blocks[i]) for i in sorted(blocks)),
        num_heads=tuple(heads),
        window_sizes=tuple(windows),
        mlp_ratio=fc1.shape[0] / fc1.shape[1],
        mbconv_expand_ratio=conv1.shape[0] / conv1.shape[1],
        local_conv_size=state[f"{p}layers.1.blocks.0.local_conv.c.weight"].shape[-1],
        num_classes=0 if head is None else head.shape[0],
    )
    return {"config": config, "out_chans": state[f"{p}neck.0.weight"].shape[0]}
