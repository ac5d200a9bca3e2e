"""Build the official segment-anything / segment-anything-hq models at any samkit configuration
and give both implementations the same random weights; the prompts the parity tests run."""

from __future__ import annotations

import numpy as np
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


# -- TinyViT: MobileSAM (mobile_sam) and Light HQ-SAM (segment_anything_hq) -------------------


def random_tiny_vit_state(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """random_state_dict, plus BatchNorm statistics away from (0, 1) and attention biases as
    large as the attention logits."""
    g = torch.Generator().manual_seed(seed + 1000)
    sd = random_state_dict(model, seed)
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            sd[k] = v
        elif k.endswith("running_var"):
            sd[k] = 0.5 + torch.rand(v.shape, generator=g)
        elif k.endswith("running_mean"):
            sd[k] = 0.2 * torch.randn(v.shape, generator=g)
        elif k.endswith("attention_biases"):
            sd[k] = torch.randn(v.shape, generator=g)
    return sd


def samkit_tiny_vit_sam(hq: bool, config=None):  # type: ignore[no-untyped-def]
    """MobileSAM's (or Light HQ-SAM's) architecture assembled from samkit's parts."""
    from samkit.models import MaskDecoder, MaskDecoderHQ, PromptEncoder, Sam, TwoWayTransformer
    from samkit.models.tiny_vit import MOBILE_SAM, build_tiny_vit_encoder

    encoder = build_tiny_vit_encoder(config or MOBILE_SAM)
    prompt_encoder = PromptEncoder(
        embed_dim=256,
        image_embedding_size=(64, 64),
        input_image_size=(1024, 1024),
        mask_in_chans=16,
    )
    kw = dict(
        transformer_dim=256,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        num_multimask_outputs=3,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    decoder = MaskDecoderHQ(vit_dim=encoder.interm_dim, **kw) if hq else MaskDecoder(**kw)
    return Sam(encoder, prompt_encoder, decoder).eval()


def official_tiny_vit_sam(hq: bool):  # type: ignore[no-untyped-def]
    """An untrained official MobileSAM (mobile_sam, ``vit_t``) or Light HQ-SAM
    (segment_anything_hq, ``vit_tiny``)."""
    import warnings

    with warnings.catch_warnings():  # timm's deprecation and registry warnings
        warnings.simplefilter("ignore")
        if hq:
            import segment_anything_hq

            return segment_anything_hq.sam_model_registry["vit_tiny"]()
        import mobile_sam

        return mobile_sam.sam_model_registry["vit_t"]()


def tiny_vit_twins(hq: bool, seed: int):  # type: ignore[no-untyped-def]
    """(official, samkit) Light HQ-SAM or MobileSAM with identical random weights."""
    off = official_tiny_vit_sam(hq)
    ours = samkit_tiny_vit_sam(hq)
    sd = random_tiny_vit_state(off, seed)
    off.load_state_dict(sd, strict=True)
    ours.load_state_dict(sd, strict=True)
    # The official attention gathers its bias table in .eval() (its builders call it before
    # loading a checkpoint, which leaves the table of the initial zeros): gather it again.
    return off.eval(), ours.eval()


def parity_prompts(h: int, w: int) -> dict:
    """The prompts the predictor parity tests run, for an h x w image, by name."""
    return {
        "one_point": dict(points=np.array([[w * 0.4, h * 0.5]]), labels=np.array([1])),
        "points_with_negatives": dict(
            points=np.array([[w * 0.3, h * 0.3], [w * 0.7, h * 0.6], [w * 0.5, h * 0.9]]),
            labels=np.array([1, 0, 1]),
        ),
        "box": dict(box=np.array([w * 0.1, h * 0.2, w * 0.8, h * 0.7])),
        "box_and_points": dict(
            points=np.array([[w * 0.5, h * 0.5], [w * 0.2, h * 0.25]]),
            labels=np.array([1, 0]),
            box=np.array([w * 0.15, h * 0.2, w * 0.85, h * 0.8]),
        ),
    }
