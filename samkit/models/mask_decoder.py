"""Mask decoder: output tokens + prompt tokens through the two-way transformer, then a
hypernetwork per mask token over the upscaled image embedding, and an IoU head.

``MaskDecoderHQ`` adds HQ-SAM's high-quality output token and the fusion of early ViT features.
Unlike the official code, both decoders accept an image batch: ``image_embeddings`` may have
batch 1 (shared by every prompt) or one entry per prompt.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from samkit.models.common import MLP, LayerNorm2d
from samkit.models.transformer import PersamGuidance, TwoWayTransformer


def _per_prompt(x: torch.Tensor, n: int) -> torch.Tensor:
    """Broadcast a batch-1 image tensor to n prompts (or pass through one per prompt)."""
    if x.shape[0] == n:
        return x
    if x.shape[0] != 1:
        raise ValueError(f"image batch {x.shape[0]} does not match the prompt batch {n}")
    return x.expand(n, *x.shape[1:])


class MaskDecoder(nn.Module):
    def __init__(
        self,
        transformer_dim: int,
        transformer: TwoWayTransformer,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth
        )

    # The upscaler's layers by name (``output_upscaling`` keeps the official Sequential, whose
    # indices are the checkpoint keys): code that runs them piece by piece reads them here.
    @property
    def upscale_conv1(self) -> nn.ConvTranspose2d:
        """C -> C/4 transposed convolution, 2x2 kernel, stride 2."""
        return cast(nn.ConvTranspose2d, self.output_upscaling[0])

    @property
    def upscale_norm(self) -> LayerNorm2d:
        return cast(LayerNorm2d, self.output_upscaling[1])

    @property
    def upscale_act1(self) -> nn.GELU:
        return cast(nn.GELU, self.output_upscaling[2])

    @property
    def upscale_conv2(self) -> nn.ConvTranspose2d:
        """C/4 -> C/8 transposed convolution, 2x2 kernel, stride 2."""
        return cast(nn.ConvTranspose2d, self.output_upscaling[3])

    @property
    def upscale_act2(self) -> nn.GELU:
        return cast(nn.GELU, self.output_upscaling[4])

    def output_tokens(self) -> torch.Tensor:
        return torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        guidance: PersamGuidance | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict masks for N prompts.

        image_embeddings: 1 or N x C x h x w; image_pe: 1 x C x h x w;
        sparse: N x T x C; dense: N x C x h x w.
        Returns low-res mask logits N x K x 4h x 4w and IoU predictions N x K
        (K = 3 with multimask_output, else 1: the single-mask token).
        """
        masks, iou_pred, _ = self.predict_masks(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            guidance,
        )
        sl = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, sl], iou_pred[:, sl]

    def run_transformer(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        guidance: PersamGuidance | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the output tokens (N x T x C) and the upscaled image (N x C/8 x 4h x 4w)."""
        n = sparse_prompt_embeddings.shape[0]
        out_tokens = self.output_tokens().unsqueeze(0).expand(n, -1, -1)
        tokens = torch.cat([out_tokens, sparse_prompt_embeddings], dim=1)
        src = _per_prompt(image_embeddings, n) + dense_prompt_embeddings
        pos_src = _per_prompt(image_pe, n)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos_src, tokens, guidance)
        src = src.transpose(1, 2).reshape(b, c, h, w)
        return hs, self.output_upscaling(src)

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        guidance: PersamGuidance | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All mask tokens: N x 4 x 4h x 4w logits, N x 4 IoU, and the N x T x C tokens."""
        hs, upscaled = self.run_transformer(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            guidance,
        )
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
        return masks, self.iou_prediction_head(iou_token_out), hs


class MaskDecoderHQ(MaskDecoder):
    """HQ-SAM decoder: SAM's decoder plus the HQ output token and global-local fusion."""

    def __init__(self, vit_dim: int, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        d = self.transformer_dim
        self.hf_token = nn.Embedding(1, d)
        self.hf_mlp = MLP(d, d, d // 8, 3)
        self.compress_vit_feat = nn.Sequential(
            nn.ConvTranspose2d(vit_dim, d, kernel_size=2, stride=2),
            LayerNorm2d(d),
            nn.GELU(),
            nn.ConvTranspose2d(d, d // 8, kernel_size=2, stride=2),
        )
        self.embedding_encoder = nn.Sequential(
            nn.ConvTranspose2d(d, d // 4, kernel_size=2, stride=2),
            LayerNorm2d(d // 4),
            nn.GELU(),
            nn.ConvTranspose2d(d // 4, d // 8, kernel_size=2, stride=2),
        )
        self.embedding_maskfeature = nn.Sequential(
            nn.Conv2d(d // 8, d // 4, 3, 1, 1),
            LayerNorm2d(d // 4),
            nn.GELU(),
            nn.Conv2d(d // 4, d // 8, 3, 1, 1),
        )

    def output_tokens(self) -> torch.Tensor:
        return torch.cat([self.iou_token.weight, self.mask_tokens.weight, self.hf_token.weight])

    def hq_features(self, image_embeddings: torch.Tensor, vit_early: torch.Tensor) -> torch.Tensor:
        """Global-local fusion: B x C x h x w neck output + B x h x w x C_vit early features."""
        vit = vit_early.permute(0, 3, 1, 2)
        return self.embedding_encoder(image_embeddings) + self.compress_vit_feat(vit)

    def forward(  # type: ignore[override]
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        hq_features: torch.Tensor | None = None,
        hq_token_only: bool = False,
        guidance: PersamGuidance | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One mask per prompt (official HQ-SAM semantics): the SAM part (token 0, or the best
        of tokens 1..3 by predicted IoU with multimask_output) plus the HQ mask, or the HQ mask
        alone with hq_token_only. hq_features: 1 or N x C/8 x 4h x 4w from ``hq_features``."""
        if hq_features is None:
            raise ValueError("HQ-SAM needs hq_features (the fused early ViT features)")
        masks, iou_pred, mask_hq = self.predict_all(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            hq_features,
            guidance,
        )
        if multimask_output:
            iou_pred, idx = iou_pred[:, 1:].max(dim=1)
            iou_pred = iou_pred.unsqueeze(1)
            sam_part = masks[torch.arange(masks.shape[0]), 1 + idx].unsqueeze(1)
        else:
            iou_pred = iou_pred[:, 0:1]
            sam_part = masks[:, 0:1]
        return (mask_hq if hq_token_only else sam_part + mask_hq), iou_pred

    def predict_all(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        hq_features: torch.Tensor,
        guidance: PersamGuidance | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """SAM masks N x 4 x H x W, IoU N x 4, and the HQ mask N x 1 x H x W (logits)."""
        hs, upscaled = self.run_transformer(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            guidance,
        )
        n = hs.shape[0]
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 2 + self.num_mask_tokens, :]
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )
        hq_in = self.hf_mlp(mask_tokens_out[:, self.num_mask_tokens, :]).unsqueeze(1)
        upscaled_hq = self.embedding_maskfeature(upscaled) + _per_prompt(hq_features, n)
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
        mask_hq = (hq_in @ upscaled_hq.view(b, c, h * w)).view(b, 1, h, w)
        return masks, self.iou_prediction_head(iou_token_out), mask_hq
