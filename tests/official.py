"""Build the official segment-anything / segment-anything-hq models at any samkit configuration
and give both implementations the same random weights."""

from __future__ import annotations

import torch

from samkit.models import SamConfig, build_sam


def build_official(cfg: SamConfig):  # type: ignore[no-untyped-def]
    if cfg.hq:
        from segment_anything_hq import modeling as m
    else:
        from segment_anything import modeling as m
    from functools import partial

    grid = cfg.image_size // cfg.patch_size
    enc = m.ImageEncoderViT(
        depth=cfg.encoder_depth,
        embed_dim=cfg.encoder_embed_dim,
        img_size=cfg.image_size,
        mlp_ratio=cfg.mlp_ratio,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=cfg.encoder_num_heads,
        patch_size=cfg.patch_size,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=list(cfg.encoder_global_attn_indexes),
        window_size=cfg.window_size,
        out_chans=cfg.prompt_embed_dim,
    )
    pe = m.PromptEncoder(
        embed_dim=cfg.prompt_embed_dim,
        image_embedding_size=(grid, grid),
        input_image_size=(cfg.image_size, cfg.image_size),
        mask_in_chans=cfg.mask_in_chans,
    )
    tr = m.TwoWayTransformer(
        depth=cfg.decoder_depth,
        embedding_dim=cfg.prompt_embed_dim,
        mlp_dim=cfg.decoder_mlp_dim,
        num_heads=cfg.decoder_num_heads,
    )
    kw = dict(
        num_multimask_outputs=cfg.num_multimask_outputs,
        transformer=tr,
        transformer_dim=cfg.prompt_embed_dim,
        iou_head_depth=3,
        iou_head_hidden_dim=cfg.iou_head_hidden_dim,
    )
    if cfg.hq:
        dec = m.MaskDecoderHQ(vit_dim=cfg.encoder_embed_dim, **kw)
    else:
        dec = m.MaskDecoder(**kw)
    return m.Sam(
        image_encoder=enc,
        prompt_encoder=pe,
        mask_decoder=dec,
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval()


def random_state_dict(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values for every tensor, pos_embed and relative-position tables included (the
    official init leaves those at zero, which would hide bugs). Norm weights stay near 1."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in model.state_dict().items():
        r = torch.randn(v.shape, generator=g)
        if k.endswith("weight") and v.ndim == 1:  # norms
            sd[k] = 1.0 + 0.1 * r
        elif v.ndim >= 2 and "gaussian" not in k:
            fan_in = max(1, v[0].numel())
            sd[k] = r / fan_in**0.5
        elif "gaussian" in k:
            sd[k] = r
        else:
            sd[k] = 0.02 * r
        if "pos_embed" in k or "rel_pos" in k:
            sd[k] = 0.02 * r
    return sd


def twin_models(cfg: SamConfig, seed: int = 0):  # type: ignore[no-untyped-def]
    """(official, samkit) with identical random weights."""
    ours = build_sam(cfg)
    off = build_official(cfg)
    sd = random_state_dict(off, seed)
    off.load_state_dict(sd, strict=True)
    ours.load_state_dict(sd, strict=True)
    return off, ours
