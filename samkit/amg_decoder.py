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
    """Decoder state for N prompts. tokens: N x T x C; image: N (or 1) x hw x C image tokens
    after the transformer (reshaped to C x h x w only for survivors); grid: (h, w); iou: N x K
    predicted IoU of the K returned masks."""

    decoder: MaskDecoder
    tokens: torch.Tensor
    image: torch.Tensor
    grid: tuple[int, int]
    iou: torch.Tensor
    first_token: int

    def masks(self, prompt: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Low-res logits M x 4h x 4w of mask k[i] of prompt prompt[i] (M pairs)."""
        dec = self.decoder
        uniq, inv = torch.unique(prompt, return_inverse=True)
        img = self.image[uniq] if self.image.shape[0] > 1 else self.image.expand(len(uniq), -1, -1)
        img = img.transpose(1, 2).reshape(len(uniq), -1, *self.grid)
        up = dec.output_upscaling(img)  # U x C/8 x 4h x 4w
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
    iou = dec.iou_prediction_head(queries[:, 0, :])
    first = 1 if multimask else 0
    iou = iou[:, 1:] if multimask else iou[:, :1]
    return PointDecoding(dec, queries, keys, (h, w), iou, first)


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
    keys = layer.norm4(_image_to_token(layer.cross_attn_image_to_token, keys, k, q, queries))
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
    scale = 1.0 / math.sqrt(d)
    a = torch.einsum("nhtd,hdc->nhtc", q * scale, _heads(att.k_proj.weight, att))
    qb = (q * (att.k_proj.bias.view(heads, 1, d) * scale)).sum(-1)  # N x H x T
    a = a.reshape(n, heads * t, c)
    qb = qb.reshape(n, -1, 1)
    if k_in.shape[0] == 1:
        s = torch.addmm(qb.reshape(-1, 1), a.reshape(-1, c), k_in[0].T).view(n, heads * t, -1)
    else:
        s = torch.baddbmm(qb, a, k_in.transpose(1, 2))
    p = torch.softmax(s, dim=-1)
    if v_in.shape[0] == 1:
        px = (p.reshape(-1, p.shape[-1]) @ v_in[0]).view(n, heads, t, c)
    else:
        px = (p @ v_in).view(n, heads, t, c)
    o = torch.einsum("nhtc,hdc->nhtd", px, _heads(att.v_proj.weight, att))
    o = o + att.v_proj.bias.view(heads, 1, d)
    return att.out_proj(o.transpose(1, 2).reshape(n, t, -1))


def _image_to_token(
    att: Attention, x: torch.Tensor, q_in: torch.Tensor, k_in: torch.Tensor, v_in: torch.Tensor
) -> torch.Tensor:
    """Image tokens attend to the few tokens and the result is added to them: returns
    x + attn(q = q_in, k = k_in, v = v_in), N x hw x C (x, q_in: 1 or N x hw x C).
    (W_q y + b_q).k = y.(W_q^T k) + b_q.k; the output projection folds into the values. Scores
    are laid out tokens-first (N x H x T x hw) so the softmax over T vectorises over pixels."""
    n, t, c = k_in.shape
    heads = att.num_heads
    k = att.k_proj(k_in).view(n, t, heads, -1)  # N x T x H x d
    d = k.shape[-1]
    scale = 1.0 / math.sqrt(d)
    m = torch.einsum("nthd,hdc->nhtc", k * scale, _heads(att.q_proj.weight, att))
    kb = torch.einsum("nthd,hd->nht", k * scale, att.q_proj.bias.view(heads, d))
    m = m.reshape(n, heads * t, c)
    kb = kb.reshape(n, -1, 1)
    if q_in.shape[0] == 1:
        s = torch.addmm(kb.reshape(-1, 1), m.reshape(-1, c), q_in[0].T).view(n, heads * t, -1)
    else:
        s = torch.baddbmm(kb, m, q_in.transpose(1, 2))
    p = torch.softmax(s.view(n, heads, t, -1), dim=2).view(n, heads * t, -1)
    v = att.v_proj(v_in).view(n, t, heads, d)
    wo = att.out_proj.weight.view(c, heads, d)
    vo = torch.einsum("nthd,chd->nhtc", v, wo).reshape(n, heads * t, c)
    # Each head's weights sum to 1 over its T tokens, so bias/H per row adds the bias once.
    vo = vo + att.out_proj.bias / heads
    return torch.baddbmm(x.expand(n, -1, -1), p.transpose(1, 2), vo)
