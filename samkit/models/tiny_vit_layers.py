"""TinyViT's layers (official names): conv + BatchNorm (folded into one convolution in eval),
and the attention block with its per-head
relative-position bias table (LeViT style), the local 3x3 depthwise conv and the MLP. On the CPU
without autograd the attention runs windows-first with q, k and v read in place, and the
linear layers as fused oneDNN kernels (``cpu_kernels``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samkit.models.cpu_kernels import derived, exact_gelu, linear, onednn


class ConvBN(nn.Module):
    """Bias-free convolution + BatchNorm (official names ``c`` and ``bn``), optionally followed
    by an exact GELU. In eval mode it runs as one convolution with the BatchNorm folded in, and
    on the CPU without autograd as one oneDNN convolution with the GELU fused into it."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.c = nn.Conv2d(
            in_chans, out_chans, kernel_size, stride, padding, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_chans)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the one convolution equal to conv + BatchNorm (running stats),
        computed in float32 whatever the weights' dtype."""
        bn, w = self.bn, self.c.weight
        assert bn.running_var is not None and bn.running_mean is not None
        scale = bn.weight.float() * torch.rsqrt(bn.running_var.float() + bn.eps)
        weight = w.float() * scale[:, None, None, None]
        bias = bn.bias.float() - bn.running_mean.float() * scale
        return weight.to(w.dtype), bias.to(w.dtype)

    def forward(self, x: torch.Tensor, gelu: bool = False) -> torch.Tensor:
        if self.training:
            x = self.bn(self.c(x))
            return F.gelu(x) if gelu else x
        bn, c = self.bn, self.c
        sources = (c.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        w, b = derived(self, "_folded", sources, self.folded)
        if onednn(x):
            w = derived(self, "_packed", sources, lambda: self._pack(w, x))
            attr, algorithm = ("gelu", "none") if gelu else ("none", None)
            return torch.ops.mkldnn._convolution_pointwise(
                x, w, b, c.padding, c.stride, c.dilation, c.groups, attr, [], algorithm
            )
        x = F.conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups)
        return exact_gelu(x) if gelu else x

    def _pack(self, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The folded ``weight`` reordered once into oneDNN's blocked layout for inputs of
        ``x``'s shape (~2% faster encoder; other shapes work too)."""
        c = self.c
        return torch.ops.mkldnn._reorder_convolution_weight(
            weight, c.padding, c.stride, c.dilation, c.groups, list(x.shape)
        )


class TinyViTBlock(nn.Module):
    """Windowed attention, a depthwise conv between attention and MLP, then the MLP, each with
    its own LayerNorm inside (official layout). B x H x W x C -> same."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float = 4.0,
        local_conv_size: int = 3,
    ) -> None:
        super().__init__()
        self.attn = WindowAttention(dim, num_heads, window_size)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        k = local_conv_size
        self.local_conv = ConvBN(dim, dim, k, 1, k // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Not attn(x).add_(x): the attention output may be a cropped view of a padded map.
        x = x + self.attn(x)
        # B x H x W x C viewed as B x C x H x W is a channels-last tensor: no copy either way.
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.mlp(x, residual=x)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ws x ws windows with a learned bias per head and per
    (|dy|, |dx|) offset between query and key (LeViT). B x H x W x C -> same.

    The official code zero-pads the map to whole windows before the LayerNorm, so every padded
    token is LayerNorm(0) = the norm's bias and has the same q, k and v. Two ways to the same
    numbers: compute those once and bring only real tokens through the norm, qkv and output
    projection (least arithmetic), or cut the padded map into windows first and read q, k and v
    in place (fewest copies; CPU inference, see ``onednn``)."""

    def __init__(self, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = dim // num_heads
        self.window_size = window_size
        self.norm = nn.LayerNorm(dim)
        # Per head, [q | k | v] side by side (not q of all heads, then k, then v).
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # The official code numbers the offsets in the order it first meets them, which for a
        # square window is dy * ws + dx.
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window_size * window_size))
        yy, xx = torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
        yy, xx = yy.flatten(), xx.flatten()
        idxs = (yy[:, None] - yy[None]).abs() * window_size + (xx[:, None] - xx[None]).abs()
        self.register_buffer("attention_bias_idxs", idxs, persistent=False)

    def bias(self) -> torch.Tensor:
        """nH x N x N additive attention bias, N = ws * ws."""
        return self.attention_biases[:, self.attention_bias_idxs]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B x H x W x C -> the attention output, B x H x W x C (on the oneDNN path a view into
        a padded map: add it to the residual rather than writing into it)."""
        return self._windows_first(x) if onednn(x) else self._tokens_first(x)

    def _tokens_first(self, x: torch.Tensor) -> torch.Tensor:
        """Norm and qkv on the real tokens of the map, the padded tokens' q, k, v computed once,
        then one copy to windows x heads: the least arithmetic (GPUs, autograd, ONNX)."""
        b, h, w, c = x.shape
        ws, nh, hd = self.window_size, self.num_heads, self.key_dim
        qkv = linear(self.qkv, self.norm(x))
        hp, wp = h + -h % ws, w + -w % ws
        if (hp, wp) != (h, w):
            padded = self.qkv(self.norm.bias).expand(b, hp, wp, 3 * c).contiguous()
            padded[:, :h, :w] = qkv
            qkv = padded
        # One copy from the map to windows x heads, with q, k and v each contiguous:
        # 3 x (B * nW) x nH x N x hd.
        gh, gw = hp // ws, wp // ws
        qkv = qkv.view(b, gh, ws, gw, ws, nh, 3, hd).permute(6, 0, 1, 3, 5, 2, 4, 7)
        q, k, v = qkv.reshape(3, b * gh * gw, nh, ws * ws, hd).unbind(0)
        o = self._attend(q, k, v)
        # Back to the map (B x H x W x C, channel = head * hd + d), padding cropped.
        o = o.view(b, gh, gw, nh, ws, ws, hd).permute(0, 1, 4, 2, 5, 3, 6).reshape(b, hp, wp, c)
        if (hp, wp) != (h, w):
            o = o[:, :h, :w].contiguous()
        return linear(self.proj, o)

    def _windows_first(self, x: torch.Tensor) -> torch.Tensor:
        """The map zero-padded and cut into windows first (C channels copied, not 3C), then
        norm, qkv and proj on every token in window order, q, k and v read in place: fewer
        copies for ~20% more qkv and proj arithmetic at 1024 px, ~1.2x faster on the CPU."""
        b, h, w, c = x.shape
        ws, nh, hd = self.window_size, self.num_heads, self.key_dim
        hp, wp = h + -h % ws, w + -w % ws
        gh, gw = hp // ws, wp // ws
        n, nw = ws * ws, b * gh * gw
        if (hp, wp) != (h, w):
            x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
        x = x.view(b, gh, ws, gw, ws, c).transpose(2, 3).reshape(nw, n, c)
        # (B * nW) x N x nH x [q | k | v] x hd: each of q, k, v a strided view, which SDPA
        # and matmul read without a copy.
        qkv = linear(self.qkv, self.norm(x)).view(nw, n, nh, 3, hd)
        q, k, v = (qkv[..., i, :].transpose(1, 2) for i in range(3))
        # SDPA's output is (B * nW) x N x nH x hd in memory: the proj input is a view.
        o = linear(self.proj, self._attend(q, k, v).transpose(1, 2).reshape(nw, n, c))
        o = o.view(b, gh, gw, ws, ws, c).transpose(2, 3).reshape(b, hp, wp, c)
        return o[:, :h, :w]

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Biased attention: (B * nW) x nH x N x hd queries, keys, values -> same shape."""
        bias = derived(self, "_bias", (self.attention_biases,), self.bias)
        if q.device.type == "cpu" and q.dtype == torch.bfloat16:
            # bf16 on the CPU: written out is ~1.5x faster than SDPA at 49-196 tokens.
            attn = (q @ k.transpose(-2, -1)).mul_(self.key_dim**-0.5).add_(bias).softmax(-1)
            return attn @ v
        # The mask expanded to the batch (no copy): SDPA's CPU kernel reads a 3-D mask much
        # more slowly than a 4-D one.
        mask = bias.to(q.dtype).expand(q.shape[0], *bias.shape)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class Mlp(nn.Module):
    """LayerNorm, fc1, GELU, fc2 (official names)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """B x ... x C -> same, plus ``residual`` if given (summed inside the last kernel)."""
        return linear(self.fc2, linear(self.fc1, self.norm(x), gelu=True), add=residual)
