"""The mask decoder, reorganised for many single-point prompts on one image (the generator's
grid). Same weights and the same function as ``Sam.decode``, equal up to float rounding; three
things make it cheaper:

- Layer 0 sees the same image tokens for every prompt, so its image-side projections run once.
- There are only a handful of tokens per prompt, so projections of the h*w image tokens are
  folded into the tokens' side instead ((x W^T) q == x (W q), and softmax rows sum to 1).
- The IoU head needs no pixels: masks are upscaled later, only for prompts that survive the
  predicted-IoU filter (``PointDecoding.masks``).

Only plain SAM decoders take this path; HQ models use ``Sam.decode``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from samkit.models.mask_decoder import MaskDecoder
from samkit.models.sam import ImageFeatures, Sam
from samkit.models.transformer import Attention, TwoWayAttentionBlock


@dataclass
class PointDecoding:
    """Decoder state for N prompts. tokens: N x T x C; image: N x C x h x w (after the
    transformer); iou: N x K predicted IoU of the K returned masks."""

    decoder: MaskDecoder
    tokens: torch.Tensor
    image: torch.Tensor
    iou: torch.Tensor
    first_token: int

    def masks(self, prompt: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Low-res logits M x 4h x 4w of mask k[i] of prompt prompt[i] (M pairs)."""
        dec = self.decoder
        uniq, inv = torch.unique(prompt, return_inverse=True)
        up = dec.output_upscaling(self.image[uniq])  # U x C/8 x 4h x 4w
        tok = self.tokens[uniq]
        hyper = torch.stack(
            [mlp(tok[:, 1 + i]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)], dim=1
        )[inv, k + self.first_token]  # M x C/8
        u = up[inv]
        m, c, h, w = u.shape
        return (hyper[:, None, :] @ u.view(m, c, h * w)).view(m, h, w)


def supports_fast_path(model: Sam) -> bool:
    return not model.is_hq and type(model.mask_decoder) is MaskDecoder


def decode_points(
    model: Sam, features: ImageFeatures, coords: torch.Tensor, multimask: bool = True
) -> PointDecoding:
    """coords: N x 2 foreground points in the model's input frame (float64 as the official
    generator keeps them). Runs the two-way transformer and the IoU head only."""
    n = coords.shape[0]
    labels = torch.ones(n, 1, dtype=torch.int, device=coords.device)
    sparse, dense = model.prompt_encoder(
        points=(coords[:, None, :], labels), boxes=None, masks=None
    )
    dec = model.mask_decoder
    tr = dec.transformer
    tokens = torch.cat([dec.output_tokens().unsqueeze(0).expand(n, -1, -1), sparse], dim=1)
    src = features.embeddings[:1] + dense[:1]  # dense is the same no-mask embedding for all
    b, c, h, w = src.shape
    keys = src.flatten(2).permute(0, 2, 1)  # 1 x hw x C, shared until layer 0 updates it
    key_pe = model.prompt_encoder.get_dense_pe().flatten(2).permute(0, 2, 1)
    query_pe = tokens
    queries = tokens
    for layer in tr.layers:
        queries, keys = _block(layer, queries, keys, query_pe, key_pe)
    q = queries + query_pe
    k = keys + key_pe
    queries = tr.norm_final_attn(
        queries + _token_to_image(tr.final_attn_token_to_image, q, k, keys)
    )
    image = keys.transpose(1, 2).reshape(-1, c, h, w).expand(n, -1, -1, -1)
    iou = dec.iou_prediction_head(queries[:, 0, :])
    first = 1 if multimask else 0
    iou = iou[:, 1:] if multimask else iou[:, :1]
    return PointDecoding(dec, queries, image, iou, first)


def _block(
    layer: TwoWayAttentionBlock,
    queries: torch.Tensor,
    keys: torch.Tensor,
    query_pe: torch.Tensor,
    key_pe: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    if layer.skip_first_layer_pe:
        queries = layer.self_attn(queries, queries, queries)
    else:
        q = queries + query_pe
        queries = queries + layer.self_attn(q, q, queries)
    queries = layer.norm1(queries)
    q = queries + query_pe
    k = keys + key_pe
    queries = layer.norm2(queries + _token_to_image(layer.cross_attn_token_to_image, q, k, keys))
    queries = layer.norm3(queries + layer.mlp(queries))
    q = queries + query_pe
    keys = layer.norm4(keys + _image_to_token(layer.cross_attn_image_to_token, k, q, queries))
    return queries, keys


def _heads(w: torch.Tensor, att: Attention) -> torch.Tensor:
    """Linear weight ci x C -> H x d x C."""
    return w.view(att.num_heads, -1, w.shape[-1])


def _token_to_image(
    att: Attention, q_in: torch.Tensor, k_in: torch.Tensor, v_in: torch.Tensor
) -> torch.Tensor:
    """Few queries (N x T x C) over many image tokens (1 or N x hw x C) -> N x T x C.
    q.(W_k x + b_k) = (W_k^T q).x + q.b_k and P (x W_v^T + b_v) = (P x) W_v^T + b_v."""
    n, t, c = q_in.shape
    heads = att.num_heads
    q = att.q_proj(q_in).view(n, t, heads, -1).transpose(1, 2)  # N x H x T x d
    d = q.shape[-1]
    a = torch.einsum("nhtd,hdc->nhtc", q, _heads(att.k_proj.weight, att))
    qb = (q * att.k_proj.bias.view(heads, 1, d)).sum(-1, keepdim=True)  # N x H x T x 1
    if k_in.shape[0] == 1:
        s = (a.reshape(-1, c) @ k_in[0].T).view(n, heads, t, -1)
    else:
        s = (a.reshape(n, heads * t, c) @ k_in.transpose(1, 2)).view(n, heads, t, -1)
    p = torch.softmax((s + qb) / math.sqrt(d), dim=-1)
    if v_in.shape[0] == 1:
        px = (p.reshape(-1, p.shape[-1]) @ v_in[0]).view(n, heads, t, c)
    else:
        px = (p.reshape(n, heads * t, -1) @ v_in).view(n, heads, t, c)
    o = torch.einsum("nhtc,hdc->nhtd", px, _heads(att.v_proj.weight, att))
    o = o + att.v_proj.bias.view(heads, 1, d)
    return att.out_proj(o.transpose(1, 2).reshape(n, t, -1))


def _image_to_token(
    att: Attention, q_in: torch.Tensor, k_in: torch.Tensor, v_in: torch.Tensor
) -> torch.Tensor:
    """Many image queries (1 or N x hw x C) over few tokens (N x T x C) -> N x hw x C.
    (W_q x + b_q).k = x.(W_q^T k) + b_q.k and the output projection folds into the values."""
    n, t, c = k_in.shape
    heads = att.num_heads
    k = att.k_proj(k_in).view(n, t, heads, -1)  # N x T x H x d
    d = k.shape[-1]
    m = torch.einsum("nthd,hdc->nhtc", k, _heads(att.q_proj.weight, att))  # N x H x T x C
    kb = torch.einsum("nthd,hd->nht", k, att.q_proj.bias.view(heads, d))  # N x H x T
    if q_in.shape[0] == 1:
        s = (q_in[0] @ m.reshape(-1, c).T).view(-1, n, heads, t).permute(1, 0, 2, 3)
    else:
        s = (q_in @ m.reshape(n, heads * t, c).transpose(1, 2)).view(n, -1, heads, t)
    p = torch.softmax((s + kb[:, None]) / math.sqrt(d), dim=-1)  # N x hw x H x T
    v = att.v_proj(v_in).view(n, t, heads, d)
    wo = att.out_proj.weight.view(c, heads, d)
    vo = torch.einsum("nthd,chd->nhtc", v, wo).reshape(n, heads * t, c)
    return p.reshape(n, -1, heads * t) @ vo + att.out_proj.bias
