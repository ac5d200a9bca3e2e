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
import torch.nn.functional as F

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
        """Low-res logits M x 4h x 4w of mask k[i] of prompt prompt[i] (M pairs); each prompt's
        image tokens are upscaled once however many of its masks are asked for."""
        dec = self.decoder
        uniq, inv = torch.unique(prompt, return_inverse=True)
        img = self.image[uniq] if self.image.shape[0] > 1 else self.image.expand(len(uniq), -1, -1)
        tok = self.tokens[uniq]
        hyper = torch.stack(
            [mlp(tok[:, 1 + i]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)], dim=1
        )  # U x K x C/8
        select = inv * hyper.shape[1] + k + self.first_token
        return upscale_tokens(dec, img, self.grid, hyper, select)


def upscale_tokens(
    dec: MaskDecoder,
    tokens: torch.Tensor,
    grid: tuple[int, int],
    hyper: torch.Tensor,
    select: torch.Tensor,
) -> torch.Tensor:
    """``dec.output_upscaling`` followed by the hypernetwork product, on image tokens laid out
    U x hw x C: both stride-2 transposed convolutions become plain matrix products with the
    2x2 kernel offsets as extra columns, and the channel LayerNorm runs on the last dimension.
    hyper: U x K x C/8; select: M indices into the U*K masks. Only those M masks have their
    pixels put in place: M x 4h x 4w."""
    conv1, norm, _, conv2, _ = dec.output_upscaling
    u, hw, c = tokens.shape
    h, w = grid
    c1, c2 = conv1.out_channels, conv2.out_channels
    w1 = conv1.weight.permute(0, 2, 3, 1).reshape(c, 4 * c1)  # C x (a b o)
    y = torch.mm(tokens.reshape(u * hw, c), w1).add_(conv1.bias.repeat(4))
    y = F.layer_norm(y.view(-1, c1), (c1,), norm.weight, norm.bias, norm.eps)
    y = F.gelu(y)
    w2 = conv2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2)
    z = F.gelu(torch.mm(y, w2).add_(conv2.bias.repeat(4)))  # (U h w a b) x (a2 b2 o2)
    out = torch.bmm(hyper, z.view(u, -1, c2).transpose(1, 2))  # U x K x (h w a b a2 b2)
    out = out.view(-1, out.shape[-1])[select]
    out = out.view(-1, h, w, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4, 6)
    return out.reshape(-1, 4 * h, 4 * w)


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
    # 1 x hw x C, shared until layer 0 updates it; contiguous, or every broadcast add over the
    # N x hw x C per-prompt tokens walks it with a stride of hw.
    keys = src.flatten(2).transpose(1, 2).contiguous()
    key_pe = model.prompt_encoder.get_dense_pe().flatten(2).transpose(1, 2).contiguous()
    query_pe = tokens
    queries = tokens
    kbuf = torch.empty(0, dtype=keys.dtype, device=keys.device)  # keys + key_pe, reused
    for layer in tr.layers:
        queries, keys = _block(layer, queries, keys, query_pe, key_pe, kbuf)
    # Only the output tokens (IoU + mask tokens) are read after the final attention, and each
    # query attends independently: the prompt tokens are dropped from it.
    nout = dec.num_mask_tokens + 1
    queries, query_pe = queries[:, :nout], query_pe[:, :nout]
    q = queries + query_pe
    k = torch.add(keys, key_pe, out=kbuf)
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
    kbuf: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    if layer.skip_first_layer_pe:
        queries = layer.self_attn(queries, queries, queries)
    else:
        q = queries + query_pe
        queries = queries + layer.self_attn(q, q, queries)
    queries = layer.norm1(queries)
    q = queries + query_pe
    k = keys + key_pe if keys.shape[0] == 1 else torch.add(keys, key_pe, out=kbuf)
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
    if k_in.shape[0] == 1 and v_in.shape[0] == 1:
        # Image tokens shared by all prompts: project them once, attend as usual.
        k = att.k_proj(k_in[0]).view(-1, heads, d).transpose(0, 1)  # H x hw x d
        v = att.v_proj(v_in[0]).view(-1, heads, d).transpose(0, 1)
        qh = q.transpose(0, 1).reshape(heads, n * t, d)
        p = torch.softmax((qh * scale) @ k.transpose(1, 2), dim=-1)  # H x NT x hw
        o = (p @ v).view(heads, n, t, d).permute(1, 2, 0, 3).reshape(n, t, heads * d)
        return att.out_proj(o)
    a = torch.einsum("nhtd,hdc->nhtc", q * scale, _heads(att.k_proj.weight, att))
    qb = (q * (att.k_proj.bias.view(heads, 1, d) * scale)).sum(-1)  # N x H x T
    a = a.reshape(n, heads * t, c)
    qb = qb.reshape(n, -1, 1)
    s = torch.baddbmm(qb, a, k_in.transpose(1, 2))
    p = torch.softmax(s, dim=-1)
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
    v = att.v_proj(v_in).view(n, t, heads, d)
    wo = att.out_proj.weight.view(c, heads, d)
    vo = torch.einsum("nthd,chd->nhtc", v, wo).reshape(n, heads * t, c)
    # Each head's weights sum to 1 over its T tokens, so bias/H per row adds the bias once.
    vo = vo + att.out_proj.bias / heads
    if q_in.shape[0] == 1:
        # Image-side queries shared by all prompts: project them once (hw x H x d).
        qi = att.q_proj(q_in[0]).view(-1, heads, d).transpose(0, 1)  # H x hw x d
        kh = (k * scale).permute(2, 0, 1, 3).reshape(heads, n * t, d)
        s = (kh @ qi.transpose(1, 2)).view(heads, n, t, -1)  # H x N x T x hw
        p = torch.softmax(s, dim=2).transpose(0, 1).reshape(n, heads * t, -1)
        out = torch.bmm(p.transpose(1, 2), vo)
        return out.add_(x)
    m = torch.einsum("nthd,hdc->nhtc", k * scale, _heads(att.q_proj.weight, att))
    kb = torch.einsum("nthd,hd->nht", k * scale, att.q_proj.bias.view(heads, d))
    m = m.reshape(n, heads * t, c)
    kb = kb.reshape(n, -1, 1)
    s = torch.baddbmm(kb, m, q_in.transpose(1, 2))
    p = torch.softmax(s.view(n, heads, t, -1), dim=2).view(n, heads * t, -1)
    out = torch.bmm(p.transpose(1, 2), vo)  # fresh N x hw x C; baddbmm would copy x first
    return out.add_(x)
