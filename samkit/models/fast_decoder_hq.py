"""HQ-SAM on the fast decoder (``samkit.models.fast_decoder``): one mask per prompt, the best
SAM mask token's plus the HQ token's, as ``MaskDecoderHQ.forward`` gives it. The HQ mask needs
each prompt's upscaled image in place for two 3x3 convolutions, the costliest step of HQ
decoding; it runs only for the prompts whose masks are asked for."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from samkit.models.mask_decoder import MaskDecoderHQ
from samkit.models.sam import ImageFeatures


@dataclass
class HQChoice:
    """HQ-SAM's one mask per prompt: SAM mask token ``token`` (N indices: 0, or the best of
    1..3 by predicted IoU with multimask) plus the HQ token's mask over the fused features
    (channels last: 1 x 4h x 4w x C/8), or the HQ mask alone with ``hq_token_only``."""

    token: torch.Tensor
    features: torch.Tensor
    hq_token_only: bool


def choose_hq(
    iou: torch.Tensor, features: ImageFeatures, multimask: bool, hq_token_only: bool
) -> tuple[torch.Tensor, HQChoice]:
    """From the IoU head's N x 4 predictions: N x 1 IoU of the one mask per prompt (token 0's,
    or the best of tokens 1..3 with multimask) and which SAM token it is."""
    if features.hq_features is None:
        raise ValueError("HQ-SAM needs hq_features (the fused early ViT features)")
    if multimask:
        iou, best = iou[:, 1:].max(dim=1, keepdim=True)
        token = best[:, 0] + 1
    else:
        iou, token = iou[:, :1], torch.zeros(len(iou), dtype=torch.long, device=iou.device)
    hq_features = features.hq_features[:1].permute(0, 2, 3, 1).contiguous()  # 1 x 4h x 4w x C/8
    return iou, HQChoice(token, hq_features, hq_token_only)


def hq_masks(
    dec: MaskDecoderHQ,
    z: torch.Tensor,
    u: int,
    grid: tuple[int, int],
    tok: torch.Tensor,
    hyper: torch.Tensor,
    hq: HQChoice,
    uniq: torch.Tensor,
) -> torch.Tensor:
    """HQ-SAM's mask of each of U prompts, U x 4h x 4w, from the upscaler's output z (as
    ``upscale`` returns it), their final tokens tok (U x T x C) and hypernetworks hyper
    (U x 4 x C/8); uniq: the prompts' indices into hq.token."""
    h, w = grid
    c2 = dec.upscale_conv2.out_channels
    # Channels last (U x 4h x 4w x C/8, pixels in place): the 3x3 convolutions run faster so,
    # and the LayerNorm between them is a plain one over the last axis.
    up = z.view(u, h, w, 2, 2, 2, 2, c2).permute(0, 1, 3, 5, 2, 4, 6, 7)
    up = up.reshape(u, 4 * h, 4 * w, c2)
    conv1, norm, act, conv2 = dec.embedding_maskfeature
    x = conv1(up.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    x = F.layer_norm(x, (x.shape[-1],), norm.weight, norm.bias, norm.eps)
    torch.ops.aten.gelu_(x, approximate=act.approximate)  # in place: one buffer fewer
    feat = conv2(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1) + hq.features
    hq_in = dec.hf_mlp(tok[:, 1 + dec.num_mask_tokens])
    out = (feat.reshape(u, -1, c2) @ hq_in[:, :, None]).view(u, 4 * h, 4 * w)
    if hq.hq_token_only:
        return out
    sam_in = hyper[torch.arange(u, device=hyper.device), hq.token[uniq]]
    return (up.view(u, -1, c2) @ sam_in[:, :, None]).view(u, 4 * h, 4 * w) + out
