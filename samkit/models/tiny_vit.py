"""TinyViT image encoder: MobileSAM, Light HQ-SAM (sam-hq ``vit_tiny``) and PerSAM's ``vit_t``.

A convolutional stem and an MBConv stage at 1/4 resolution, then stages of windowed attention
joined by patch merging, then SAM's neck. For MobileSAM's TinyViT-5M at 1024 px:

    patch_embed  two stride-2 3x3 convs          B x 3 x 1024 x 1024 -> B x 64 x 256 x 256
    layers.0     2 MBConv, merge                 -> B x 128 x 128 x 128  (B x H x W x C on)
    layers.1     2 attention blocks (4 heads, 7 x 7 windows), merge   -> B x 64 x 64 x 160
    layers.2     6 attention blocks (5 heads, 14 x 14), merge, stride 1 -> B x 64 x 64 x 320
    layers.3     2 attention blocks (10 heads, 7 x 7)
    neck         as in SAM's ViT                 -> B x 256 x 64 x 64

Parameter and buffer names are the official ones (``tiny_vit_sam.py`` in MobileSAM and sam-hq),
so ``mobile_sam.pt`` and ``sam_hq_vit_tiny.pth`` load with strict=True. Light HQ-SAM fuses the
output of ``layers.1`` (B x 64 x 64 x 160) into its decoder, as the ViT models fuse the first
global block; ``forward_with_interm`` returns it.

Where this differs from the official code, on purpose:
- The patch merging into the last stage keeps the resolution because it is the last one; the
  official code decides by width (320, 448 or 576: the last widths of its three variants).
  Same result for every official model, and TinyViTs of other widths work too.
- The embedding grid is read off the input, not fixed at 64 x 64.
- In eval mode each conv + BatchNorm pair runs as one convolution with the BatchNorm folded in,
  and each attention block's bias table is gathered once. Both are computed when first needed
  and again only when the weights they come from change; while autograd needs gradients for
  them they are computed afresh on every call instead (see ``derived``).
- Padded attention tokens (zeros before the LayerNorm in the official code) all have the same
  q, k and v: they are computed once, not per token, and only real tokens are projected.
- CPU inference (no autograd, no tracing) runs each conv and linear layer with its bias and GELU
  fused as one oneDNN kernel, stage 0's MBConvs in row strips (see ``cpu_kernels.STRIP_BYTES``), and
  window attention windows-first: the padded map is cut into windows before the norm, and q, k
  and v are read in place (fewer copies than computing the padded tokens once).
  Outputs stay within ~1e-5 of the official code in float32 (docs/benchmarks.md, TinyViT).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from samkit.models.common import LayerNorm2d
from samkit.models.cpu_kernels import exact_gelu, onednn, row_strips
from samkit.models.tiny_vit_layers import ConvBN, TinyViTBlock


@dataclass(frozen=True)
class TinyViTConfig:
    """Every number of a TinyViT encoder; the defaults are MobileSAM's TinyViT-5M.

    Per-stage tuples: stage 0 is convolutional, so its ``num_heads`` / ``window_sizes`` entries
    are unused (kept so the tuples line up with ``embed_dims``, as in the official code).
    """

    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    # TinyViT's ImageNet classifier: never run by SAM, but in every official checkpoint.
    num_classes: int = 1000

    def __post_init__(self) -> None:
        n = len(self.embed_dims)
        if n < 3 or not (len(self.depths) == len(self.num_heads) == len(self.window_sizes) == n):
            raise ValueError(
                "TinyViT needs at least 3 stages and one depth, head count and window size per "
                f"stage; got embed_dims={self.embed_dims}, depths={self.depths}, "
                f"num_heads={self.num_heads}, window_sizes={self.window_sizes}"
            )
        for dim, heads in zip(self.embed_dims[1:], self.num_heads[1:]):
            if dim % heads:
                raise ValueError(f"TinyViT width {dim} is not divisible by {heads} heads")

    @property
    def interm_dim(self) -> int:
        """Width of the early features HQ-SAM fuses (the output of stage 1)."""
        return self.embed_dims[2]

    @property
    def stride(self) -> int:
        """Input pixels per embedding cell: 4 from the stem, then 2 per merge but the last."""
        return 4 * 2 ** (len(self.embed_dims) - 2)

    def to_dict(self) -> dict:
        """JSON-ready: lists for the per-stage tuples."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> TinyViTConfig:
        d = dict(d)
        for k in ("embed_dims", "depths", "num_heads", "window_sizes"):
            d[k] = tuple(d[k])
        return cls(**d)


MOBILE_SAM = TinyViTConfig()


class TinyViT(nn.Module):
    """The image encoder: stem, stages, neck (and the unused classifier head, for loading)."""

    def __init__(
        self, config: TinyViTConfig = MOBILE_SAM, img_size: int = 1024, out_chans: int = 256
    ) -> None:
        super().__init__()
        c = config
        self.config = c
        self.img_size = img_size
        dims = c.embed_dims
        n = len(dims)
        self.patch_embed = PatchEmbed(3, dims[0])
        self.layers = nn.ModuleList()
        for i in range(n):
            # Every merge halves the grid except the one into the last stage.
            merge = None
            if i < n - 1:
                merge = PatchMerging(dims[i], dims[i + 1], stride=2 if i < n - 2 else 1)
            if i == 0:
                self.layers.append(ConvStage(dims[0], c.depths[0], c.mbconv_expand_ratio, merge))
            else:
                self.layers.append(
                    AttentionStage(
                        dims[i],
                        c.depths[i],
                        c.num_heads[i],
                        c.window_sizes[i],
                        c.mlp_ratio,
                        c.local_conv_size,
                        merge,
                    )
                )
        self.norm_head = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], c.num_classes) if c.num_classes > 0 else nn.Identity()
        self.neck = nn.Sequential(
            nn.Conv2d(dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    @property
    def interm_dim(self) -> int:
        return self.config.interm_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B x 3 x S x S normalised, padded images -> B x out_chans x S/16 x S/16 (S/stride for
        TinyViTs with other than 4 stages)."""
        return self.forward_with_interm(x)[0]

    def forward_with_interm(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Like ``forward``, also returning [the B x S/16 x S/16 x embed_dims[2] output of
        stage 1], the early features HQ-SAM fuses with its decoder features."""
        # Channels-last convolutions are 2-3x faster on CPUs (depthwise most of all), and the
        # attention stages' B x H x W x C tokens are channels-last images already.
        x = self.layers[0](self.patch_embed(x.contiguous(memory_format=torch.channels_last)))
        interm = []
        for i, layer in enumerate(self.layers[1:], start=1):
            x = layer(x)
            if i == 1:
                interm.append(x)
        return self.neck(x.permute(0, 3, 1, 2)).contiguous(), interm


def build_tiny_vit_encoder(
    config: TinyViTConfig = MOBILE_SAM, img_size: int = 1024, out_chans: int = 256
) -> TinyViT:
    """A TinyViT image encoder with the official module names (untrained)."""
    return TinyViT(config, img_size=img_size, out_chans=out_chans)


# -- building blocks --------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 conv + BN with a GELU between: B x 3 x H x W -> B x C x H/4 x W/4."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            ConvBN(in_chans, embed_dim // 2, 3, 2, 1),
            nn.GELU(),  # fused into seq.0 in forward; kept so seq.2 has the official name
            ConvBN(embed_dim // 2, embed_dim, 3, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq[2](self.seq[0](x, gelu=True))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project, + input, GELU. B x C x H x W."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, 3, 1, 1, groups=hidden)
        self.conv3 = ConvBN(hidden, dim)

    def block(self, x: torch.Tensor, lo: int = 0, hi: int | None = None) -> torch.Tensor:
        """Output rows ``lo:hi`` of the block (all by default), from input rows that include
        the depthwise conv's halo: the 1x1 projection and the sum skip the halo rows."""
        y = self.conv2(self.conv1(x, gelu=True), gelu=True)[:, :, lo:hi]
        return exact_gelu(self.conv3(y).add_(x[:, :, lo:hi]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not onednn(x):
            return self.block(x)
        # Row strips with one row of halo for the depthwise conv: every output row sees the
        # same inputs as on the whole map (zero padding only at the map's own edges).
        h, w = x.shape[-2:]
        row_bytes = w * self.conv1.c.out_channels * x.element_size() * x.shape[0]
        out = torch.empty_like(x)
        for lo, hi, a, b in row_strips(h, row_bytes, halo=1):
            out[:, :, lo:hi] = self.block(x[:, :, a:b], lo - a, hi - a)
        return out


class PatchMerging(nn.Module):
    """1x1 conv, GELU, depthwise 3x3 conv with ``stride``, GELU, 1x1 conv:
    B x C x H x W -> B x H/stride x W/stride x C' (the attention stages' layout)."""

    def __init__(self, dim: int, out_dim: int, stride: int = 2) -> None:
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(self.conv1(x, gelu=True), gelu=True)
        return self.conv3(x).permute(0, 2, 3, 1)


class ConvStage(nn.Module):
    """Stage 0: MBConv blocks, then the merge: B x C x H x W -> B x H/2 x W/2 x C'."""

    def __init__(
        self, dim: int, depth: int, expand_ratio: float, downsample: PatchMerging | None
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return x if self.downsample is None else self.downsample(x)


class AttentionStage(nn.Module):
    """TinyViT blocks, then the merge (if any): B x H x W x C -> B x H' x W' x C'."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        local_conv_size: int,
        downsample: PatchMerging | None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, num_heads, window_size, mlp_ratio, local_conv_size)
            for _ in range(depth)
        )
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return x if self.downsample is None else self.downsample(x.permute(0, 3, 1, 2))
