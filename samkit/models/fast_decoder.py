"""The mask decoder, reorganised for prompts on one embedded image: the generator's grid of
single points, and the predictor's clicks and boxes. Same weights and the same function as
``Sam.decode``, equal up to float rounding:

- Layer 0 sees the same image tokens for every prompt (unless a mask is given), so its
  image-side projections run once per image (cached on the ``ImageFeatures``: a second click
  reuses them) and each prompt's attention over them is a small product.
- There are only a handful of tokens per prompt, so projections of the h*w per-prompt image
  tokens are folded onto the tokens' side instead ((x W^T) q == x (W q); softmax rows sum to 1).
- The IoU head needs no pixels: masks are upscaled later, only for prompts that survive the
  predicted-IoU filter (``PointDecoding.masks``), once per prompt however many of its masks
  survive.
- The upscaler's first (linear) layer never sees the final per-prompt image tokens: each block
  changed them by a LayerNorm of (tokens + a rank-HT update), so their product with the weight
  unrolls into one shared product plus two rank-HT products per block (``project_traced``).
  The transposed convolutions run as matrix products in token layout, and pixels are put in
  place only for the masks asked for.
- HQ-SAM (one mask per prompt: the best SAM mask token plus the HQ token's mask) takes the
  same path with its extra token; its costliest part, the two 3x3 convolutions over each
  prompt's upscaled image, runs only for the prompts whose masks are asked for.

The predictor's HQ prompts still use ``Sam.decode`` (``supports_fast_path(model, hq=False)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from samkit.models.fast_decoder_hq import HQChoice, choose_hq, hq_masks
from samkit.models.mask_decoder import MaskDecoder, MaskDecoderHQ
from samkit.models.sam import ImageFeatures, Sam
from samkit.models.transformer import Attention, TwoWayAttentionBlock


class Workspace:
    """Named scratch buffers reused call after call. The generator decodes batch after batch
    of N x hw x C tensors (hundreds of MB); fresh ones are page-faulted in each time, which on
    this kind of machine costs as much as a pass over them. Used only where the lifetimes
    below allow it; None means ordinary allocations."""

    def __init__(self) -> None:
        self._bufs: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        n = math.prod(shape)
        b = self._bufs.get(name)
        if b is None or b.numel() < n or b.dtype != like.dtype or b.device != like.device:
            b = torch.empty(n, dtype=like.dtype, device=like.device)
            self._bufs[name] = b
        return b[:n].view(shape)


def _empty(
    ws: Workspace | None, name: str, shape: tuple[int, ...], like: torch.Tensor
) -> torch.Tensor:
    if ws is None:
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    return ws.get(name, shape, like)


@dataclass
class LayerTrace:
    """What one block did to the image tokens, kept so the upscaler can rebuild the final image
    tokens' projection without them: keys_out = LN((keys_in + p^T vo)), with p: N x HT x hw
    attention weights, vo: N x HT x C values (output projection and bias folded in), and the
    LayerNorm's N x hw x 1 mean / rstd and weight / bias."""

    p: torch.Tensor
    vo: torch.Tensor
    mean: torch.Tensor
    rstd: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def take(self, idx: torch.Tensor) -> LayerTrace:
        return LayerTrace(
            self.p[idx], self.vo[idx], self.mean[idx], self.rstd[idx], self.weight, self.bias
        )


@dataclass
class PointDecoding:
    """Decoder state for N prompts. tokens: N x T x C after the transformer; src: 1 x hw x C
    image tokens before it (shared); trace: per block, how they were updated; grid: (h, w);
    iou: N x K predicted IoU of the K returned masks (K = 1 for HQ-SAM, see ``hq``)."""

    decoder: MaskDecoder
    tokens: torch.Tensor
    src: torch.Tensor
    trace: list[LayerTrace]
    grid: tuple[int, int]
    iou: torch.Tensor
    first_token: int
    cache: dict[str, torch.Tensor]
    keys: torch.Tensor | None = None  # final image tokens, kept when src is per prompt
    workspace: Workspace | None = None
    hq: HQChoice | None = None

    def all_masks(self, chunk: int = 16) -> torch.Tensor:
        """Low-res logits N x K x 4h x 4w of every returned mask, chunk prompts at a time."""
        n, k = self.iou.shape
        out = []
        for s in range(0, n, chunk):
            idx = torch.arange(s, min(n, s + chunk), device=self.iou.device)
            out.append(self.masks(idx.repeat_interleave(k), torch.arange(k).repeat(len(idx))))
        return torch.cat(out).view(n, k, *out[0].shape[-2:])

    def masks(self, prompt: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Low-res logits M x 4h x 4w of mask k[i] of prompt prompt[i] (M pairs); each prompt's
        image tokens are upscaled once however many of its masks are asked for."""
        dec = self.decoder
        uniq, inv = torch.unique(prompt, return_inverse=True)
        tok = self.tokens[uniq]
        hyper = torch.stack(
            [mlp(tok[:, 1 + i]) for i, mlp in enumerate(dec.output_hypernetworks_mlps)], dim=1
        )  # U x 4 x C/8
        y = self._upscaler_input(uniq)
        if self.hq is not None:
            assert isinstance(dec, MaskDecoderHQ)
            z = upscale(dec, y, self.workspace)
            return hq_masks(dec, z, len(uniq), self.grid, tok, hyper, self.hq, uniq)[inv]
        select = inv * hyper.shape[1] + k + self.first_token
        return upscale_rest(dec, y, len(uniq), self.grid, hyper, select, self.workspace)

    def _upscaler_input(self, uniq: torch.Tensor) -> torch.Tensor:
        """The upscaler's first transposed convolution of prompts uniq's final image tokens as
        a matrix product: (U h w) x (a b C/4), the 2x2 kernel offsets as columns."""
        conv1 = self.decoder.upscale_conv1
        c = conv1.in_channels
        w1 = conv1.weight.permute(0, 2, 3, 1).reshape(c, -1)  # C x (a b o)
        if self.keys is not None:  # per-prompt src (a mask prompt): nothing shared to reuse
            y = self.keys[uniq] @ w1
        else:
            if "src_w1" not in self.cache:
                self.cache["src_w1"] = self.src @ _unrolled(self.trace, w1)[0]
            trace = [t.take(uniq) for t in self.trace]
            y = project_traced(self.cache["src_w1"], trace, w1, self.workspace)
        return y.view(-1, y.shape[-1]).add_(conv1.bias.repeat(4))


def _unrolled(trace: list[LayerTrace], w: torch.Tensor) -> list[torch.Tensor]:
    """[g_1 ... g_L w, g_2 ... g_L w, ..., w] for the blocks' LayerNorm weights g."""
    mats = [w]
    for t in reversed(trace):
        mats.append(t.weight[:, None] * mats[-1])
    return mats[::-1]


def project_traced(
    src_w: torch.Tensor,
    trace: list[LayerTrace],
    w: torch.Tensor,
    ws: Workspace | None = None,
) -> torch.Tensor:
    """(final image tokens) @ w, U x hw x D, without the final tokens: each LayerNorm is
    y -> (y - mean) * rstd * g + b, so (LN(y_in + p^T vo)) @ A
      = rstd * (y_in @ (g A) + p^T (vo (g A)) - mean colsum(g A)) + b A,
    unrolled down to the shared src_w = src @ (g_1 ... g_L w) (computed once per image): two
    rank-HT products per block instead of a full hw x C x D product per prompt."""
    mats = _unrolled(trace, w)
    u, hw = trace[0].p.shape[0], src_w.shape[1]
    out = _empty(ws, "up1", (u, hw, w.shape[1]), src_w)
    for i, t in enumerate(trace):
        a = mats[i]
        torch.baddbmm(src_w if i == 0 else out, t.p.transpose(1, 2), t.vo @ a, out=out)
        out.baddbmm_(t.mean, a.sum(0).expand(len(out), 1, -1), alpha=-1)
        out.mul_(t.rstd).add_(t.bias @ mats[i + 1])
    return out


def upscale(dec: MaskDecoder, y: torch.Tensor, ws: Workspace | None = None) -> torch.Tensor:
    """The rest of the decoder's upscaler after the first transposed convolution as a matrix
    product y: (U h w) x (a b c1) (the 2x2 kernel offsets as columns): LayerNorm over c1, GELU,
    the second transposed convolution likewise, GELU. Returns (U h w a b) x (a2 b2 c2)."""
    norm, conv2 = dec.upscale_norm, dec.upscale_conv2
    c1, c2 = conv2.in_channels, conv2.out_channels
    y = y.view(-1, c1)
    yn = _empty(ws, "up2", tuple(y.shape), y)
    mean, rstd = y.new_empty(len(y), 1), y.new_empty(len(y), 1)
    torch.ops.aten.native_layer_norm.out(
        y, [c1], norm.weight, norm.bias, norm.eps, out0=yn, out1=mean, out2=rstd
    )
    torch.ops.aten.gelu_(yn, approximate=dec.upscale_act1.approximate)
    w2 = conv2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2)
    z = torch.mm(yn, w2, out=_empty(ws, "up3", (len(yn), 4 * c2), yn))  # (U h w a b) x (a2 b2 o2)
    torch.ops.aten.gelu_(z.add_(conv2.bias.repeat(4)), approximate=dec.upscale_act2.approximate)
    return z


def upscale_rest(
    dec: MaskDecoder,
    y: torch.Tensor,
    u: int,
    grid: tuple[int, int],
    hyper: torch.Tensor,
    select: torch.Tensor,
    ws: Workspace | None = None,
) -> torch.Tensor:
    """``upscale`` and the hypernetwork product: hyper: U x K x C/8; select: M indices into the
    U*K masks, the only ones whose pixels are put in place: M x 4h x 4w."""
    h, w = grid
    c2 = dec.upscale_conv2.out_channels
    z = upscale(dec, y, ws)
    out = torch.bmm(hyper, z.view(u, -1, c2).transpose(1, 2))  # U x K x (h w a b a2 b2)
    out = out.view(-1, out.shape[-1])[select]
    out = out.view(-1, h, w, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4, 6)
    return out.reshape(-1, 4 * h, 4 * w)


def supports_fast_path(model: Sam, hq: bool = False) -> bool:
    """Whether ``decode_prompts`` can decode for this model. hq: the caller takes HQ-SAM's one
    mask per prompt and passes ``hq_token_only`` on (the generator does; the predictor not yet)."""
    if type(model.mask_decoder) is MaskDecoderHQ:
        return hq
    return type(model.mask_decoder) is MaskDecoder


def decode_points(
    model: Sam,
    features: ImageFeatures,
    coords: torch.Tensor,
    multimask: bool = True,
    workspace: Workspace | None = None,
    hq_token_only: bool = False,
) -> PointDecoding:
    """coords: N x 2 foreground points in the model's input frame (float64 as the official
    generator keeps them), one prompt each."""
    labels = torch.ones(coords.shape[0], 1, dtype=torch.int, device=coords.device)
    pts = (coords[:, None, :], labels)
    return decode_prompts(
        model, features, pts, multimask=multimask, workspace=workspace, hq_token_only=hq_token_only
    )


def decode_prompts(
    model: Sam,
    features: ImageFeatures,
    points: tuple[torch.Tensor, torch.Tensor] | None = None,
    boxes: torch.Tensor | None = None,
    masks: torch.Tensor | None = None,
    multimask: bool = True,
    workspace: Workspace | None = None,
    hq_token_only: bool = False,
) -> PointDecoding:
    """N prompts on one image (features of batch 1), as ``Sam.decode`` takes them: points
    (N x P x 2, N x P), boxes N x 4, masks N x 1 x 4h x 4w. Runs the two-way transformer and
    the IoU head; masks come from ``PointDecoding.masks`` / ``all_masks``. HQ-SAM gives one
    mask per prompt, as ``Sam.decode`` with this ``hq_token_only``."""
    sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=masks)
    n = sparse.shape[0]
    dec = model.mask_decoder
    tr = dec.transformer
    tokens = torch.cat([dec.output_tokens().unsqueeze(0).expand(n, -1, -1), sparse], dim=1)
    shared = masks is None  # else each prompt's dense (mask) embedding differs
    # Per image (and model), when the image tokens are shared: the tokens, the positional
    # encoding, layer 0's image-side projections and the upscaler's shared product. Keyed by
    # the decoder so that another model's work on the same features is never mixed in.
    cache = features.cache.setdefault(f"fast_decoder:{id(dec)}", {}) if shared else {}
    h, w = features.embeddings.shape[-2:]
    if "keys" not in cache:
        # Without a mask prompt the dense embedding is the same no-mask embedding for all.
        src = features.embeddings[:1] + dense[:1] if shared else features.embeddings + dense
        # 1 (or N) x hw x C, shared until layer 0 updates it; contiguous, or every broadcast
        # add over the N x hw x C per-prompt tokens walks it with a stride of hw.
        cache["keys"] = src.flatten(2).transpose(1, 2).contiguous()
        pe = model.prompt_encoder.get_dense_pe()
        cache["key_pe"] = pe.flatten(2).transpose(1, 2).contiguous()
    keys, key_pe = cache["keys"], cache["key_pe"]
    query_pe = tokens
    queries = tokens
    src = keys
    ws = workspace
    kbuf = _empty(ws, "k", (n, h * w, keys.shape[-1]), keys)  # keys + key_pe, reused
    trace: list[LayerTrace] = []
    for i, layer in enumerate(tr.layers):
        queries, keys = _block(
            layer,
            queries,
            keys,
            query_pe,
            key_pe,
            kbuf,
            trace,
            cache if i == 0 and shared else None,
            ws,
        )
    # Only the output tokens (IoU + mask tokens) are read after the final attention, and each
    # query attends independently: the prompt tokens are dropped from it.
    hq_dec = isinstance(dec, MaskDecoderHQ)
    nout = dec.num_mask_tokens + (2 if hq_dec else 1)
    queries, query_pe = queries[:, :nout], query_pe[:, :nout]
    q = queries + query_pe
    k = torch.add(keys, key_pe, out=kbuf)
    queries = tr.norm_final_attn(
        queries + _token_to_image(tr.final_attn_token_to_image, q, k, keys)
    )
    iou = dec.iou_prediction_head(queries[:, 0, :])
    first = 1 if multimask else 0
    hq = None
    if hq_dec:
        iou, hq = choose_hq(iou, features, multimask, hq_token_only)
    else:
        iou = iou[:, 1:] if multimask else iou[:, :1]
    keys_out = None if shared else keys
    return PointDecoding(dec, queries, src, trace, (h, w), iou, first, cache, keys_out, ws, hq)


def _block(
    layer: TwoWayAttentionBlock,
    queries: torch.Tensor,
    keys: torch.Tensor,
    query_pe: torch.Tensor,
    key_pe: torch.Tensor,
    kbuf: torch.Tensor,
    trace: list[LayerTrace],
    cache: dict[str, torch.Tensor] | None,
    ws: Workspace | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One two-way block. With a workspace, y = keys + attention update lives in its "y"
    buffer (reused by the next block: y is dead once LN(y) is taken)."""
    if layer.skip_first_layer_pe:
        queries = layer.self_attn(queries, queries, queries)
    else:
        q = queries + query_pe
        queries = queries + layer.self_attn(q, q, queries)
    queries = layer.norm1(queries)
    q = queries + query_pe
    if cache is not None:  # shared image tokens: keys + key_pe once per image
        if "k0" not in cache:
            cache["k0"] = keys + key_pe
        k = cache["k0"]
    elif keys.shape[0] == 1:
        k = keys + key_pe
    else:
        k = torch.add(keys, key_pe, out=kbuf)
    t2i = _token_to_image(layer.cross_attn_token_to_image, q, k, keys, cache)
    queries = layer.norm2(queries + t2i)
    queries = layer.norm3(queries + layer.mlp(queries))
    q = queries + query_pe
    y, p, vo = _image_to_token(layer.cross_attn_image_to_token, keys, k, q, queries, cache, ws)
    norm = layer.norm4
    # (native_layer_norm.out computes into a temporary and copies: allocating is cheaper.)
    keys, mean, rstd = torch.native_layer_norm(
        y, norm.normalized_shape, norm.weight, norm.bias, norm.eps
    )
    trace.append(LayerTrace(p, vo, mean, rstd, norm.weight, norm.bias))
    return queries, keys


def _heads(w: torch.Tensor, att: Attention) -> torch.Tensor:
    """Linear weight ci x C -> H x d x C."""
    return w.view(att.num_heads, -1, w.shape[-1])


def _token_to_image(
    att: Attention,
    q_in: torch.Tensor,
    k_in: torch.Tensor,
    v_in: torch.Tensor,
    cache: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Few queries (N x T x C) over many image tokens (1 or N x hw x C) -> N x T x C.
    q.(W_k x + b_k) = (W_k^T q).x + q.b_k and P (x W_v^T + b_v) = (P x) W_v^T + b_v."""
    n, t, c = q_in.shape
    heads = att.num_heads
    q = att.q_proj(q_in).view(n, t, heads, -1).transpose(1, 2)  # N x H x T x d
    d = q.shape[-1]
    scale = 1.0 / math.sqrt(d)
    if cache is not None:
        # Image tokens shared by all prompts: project them once, attend as usual.
        if "t2i_k" not in cache:
            cache["t2i_k"] = att.k_proj(k_in[0]).view(-1, heads, d).transpose(0, 1)  # H x hw x d
            cache["t2i_v"] = att.v_proj(v_in[0]).view(-1, heads, d).transpose(0, 1)
        k, v = cache["t2i_k"], cache["t2i_v"]
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
    att: Attention,
    x: torch.Tensor,
    q_in: torch.Tensor,
    k_in: torch.Tensor,
    v_in: torch.Tensor,
    cache: dict[str, torch.Tensor] | None,
    ws: Workspace | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image tokens attend to the few tokens and the result is added to them: returns
    x + attn(q = q_in, k = k_in, v = v_in), N x hw x C (x, q_in: 1 or N x hw x C), and the
    attention weights p (N x HT x hw) and values vo (N x HT x C) that made it.
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
    if cache is not None:
        # Image-side queries shared by all prompts: project them once (hw x H x d).
        if "i2t_q" not in cache:
            cache["i2t_q"] = att.q_proj(q_in[0]).view(-1, heads, d).transpose(0, 1)  # H x hw x d
        qi = cache["i2t_q"]
        kh = (k * scale).permute(2, 0, 1, 3).reshape(heads, n * t, d)
        s = (kh @ qi.transpose(1, 2)).view(heads, n, t, -1)  # H x N x T x hw
        p = torch.softmax(s, dim=2).transpose(0, 1).reshape(n, heads * t, -1)
        out = _empty(ws, "y", (n, p.shape[-1], c), x)
        return torch.bmm(p.transpose(1, 2), vo, out=out).add_(x), p, vo
    m = torch.einsum("nthd,hdc->nhtc", k * scale, _heads(att.q_proj.weight, att))
    kb = torch.einsum("nthd,hd->nht", k * scale, att.q_proj.bias.view(heads, d))
    m = m.reshape(n, heads * t, c)
    kb = kb.reshape(n, -1, 1)
    s = torch.baddbmm(kb, m, q_in.transpose(1, 2))
    p = torch.softmax(s.view(n, heads, t, -1), dim=2).view(n, heads * t, -1)
    out = _empty(ws, "y", (n, p.shape[-1], c), x)  # baddbmm would copy x in first
    return torch.bmm(p.transpose(1, 2), vo, out=out).add_(x), p, vo
