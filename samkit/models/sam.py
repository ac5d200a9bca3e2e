"""The assembled SAM: normalise + pad in, encoder, prompt encoder, decoder, upscale + crop out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from samkit.models.image_encoder import ImageEncoderViT
from samkit.models.mask_decoder import MaskDecoder, MaskDecoderHQ
from samkit.models.prompt_encoder import PromptEncoder
from samkit.models.tiny_vit import TinyViT
from samkit.models.transformer import PersamGuidance

if TYPE_CHECKING:  # configs.py builds Sam, so it cannot be imported here at run time
    from samkit.models.configs import SamConfig

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass
class ImageFeatures:
    """What the image encoder computes once per image.

    embeddings: B x C x h x w neck output.
    hq_features: B x C/8 x 4h x 4w fused early-ViT features (HQ models only, else None).
    """

    embeddings: torch.Tensor
    hq_features: torch.Tensor | None = None
    # Per-image work that prompts reuse (samkit.models.fast_decoder); never part of equality.
    cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __getitem__(self, i: int | slice) -> ImageFeatures:
        sl = slice(i, i + 1) if isinstance(i, int) else i
        hq = None if self.hq_features is None else self.hq_features[sl]
        return ImageFeatures(self.embeddings[sl], hq)


class Sam(nn.Module):
    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(
        self,
        image_encoder: ImageEncoderViT | TinyViT,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean: tuple[float, float, float] = PIXEL_MEAN,
        pixel_std: tuple[float, float, float] = PIXEL_STD,
        config: SamConfig | None = None,
    ) -> None:
        """config: the configuration the parts were built from (``build_sam`` gives it), kept
        so that a saved or exported model records its architecture; None for hand-made parts."""
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.config = config
        # MaskGenerator settings that suit these weights (a checkpoint's "samkit_generator"
        # metadata); ``MaskGenerator.from_preset`` applies them beneath the preset.
        self.generator_defaults: dict[str, float | int] = {}
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def image_size(self) -> int:
        return self.image_encoder.img_size

    @property
    def is_hq(self) -> bool:
        return isinstance(self.mask_decoder, MaskDecoderHQ)

    @property
    def encoder_dtype(self) -> torch.dtype:
        """The image encoder's weight dtype: float32, or bfloat16 / float16 after
        ``set_precision``."""
        return next(self.image_encoder.parameters()).dtype

    def set_precision(self, dtype: torch.dtype) -> Sam:
        """Cast the image encoder's weights to ``dtype`` once (where nearly all the arithmetic
        is); prompt encoder, mask decoder and HQ fusion stay float32, and features come out as
        float32. Returns self."""
        self.image_encoder.to(dtype)
        return self

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """B x 3 x h x w (uint8 or float, 0..255) -> normalised, zero-padded B x 3 x S x S."""
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        return F.pad(x, (0, self.image_size - w, 0, self.image_size - h))

    def embed(self, x: torch.Tensor) -> ImageFeatures:
        """Resized images (B x 3 x h x w, long side == image_size, 0..255) -> features."""
        return self.encode(self.preprocess(x))

    def encode(self, x: torch.Tensor) -> ImageFeatures:
        """Normalised, padded B x 3 x S x S images -> features."""
        x = x.to(self.encoder_dtype)
        if not self.is_hq:
            return ImageFeatures(self.image_encoder(x).float())
        emb, interm = self.image_encoder.forward_with_interm(x)
        assert isinstance(self.mask_decoder, MaskDecoderHQ)
        emb = emb.float()
        return ImageFeatures(emb, self.mask_decoder.hq_features(emb, interm[0].float()))

    def decode(
        self,
        features: ImageFeatures,
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        hq_token_only: bool = False,
        guidance: PersamGuidance | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode N prompts in the model's input frame (coordinates in resized-image pixels).

        features: batch 1 (shared) or N (one image per prompt).
        points: (N x P x 2, N x P); boxes: N x 4; mask_input: N x 1 x 4h x 4w logits.
        guidance: PerSAM's target guidance for the decoder, or None.
        Returns low-res logits N x K x 4h x 4w and IoU predictions N x K.
        """
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        pe = self.prompt_encoder.get_dense_pe()
        if self.is_hq:
            return self.mask_decoder(
                features.embeddings,
                pe,
                sparse,
                dense,
                multimask_output,
                hq_features=features.hq_features,
                hq_token_only=hq_token_only,
                guidance=guidance,
            )
        return self.mask_decoder(
            features.embeddings,
            pe,
            sparse,
            dense,
            multimask_output,
            guidance=guidance,
        )

    def postprocess_masks(
        self,
        masks: torch.Tensor,
        input_size: tuple[int, int],
        original_size: tuple[int, int],
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Low-res logits B x K x 4h x 4w -> logits at the original image size (official
        two-stage bilinear: up to S x S, crop the padding, resize to the original).

        out: a B x K x H x W buffer to write the result into (saves page-faulting a fresh one
        for every batch); it may be returned as is or not used when no resize is needed."""
        s = self.image_size
        lh, lw = masks.shape[-2:]
        if s % lh == 0 and s % lw == 0:
            # Only the low-res rows/columns that reach the un-padded part (+1 for the bilinear
            # neighbour): same source coordinates, so the same numbers, and none of the padding.
            fh, fw = s // lh, s // lw
            rh = min(lh, -(-input_size[0] // fh) + 1)
            rw = min(lw, -(-input_size[1] // fw) + 1)
            masks = F.interpolate(
                masks[..., :rh, :rw].contiguous(),  # a strided input takes a slow path
                (rh * fh, rw * fw),
                mode="bilinear",
                align_corners=False,
            )
        else:
            masks = F.interpolate(masks, (s, s), mode="bilinear", align_corners=False)
        masks = masks[..., : input_size[0], : input_size[1]]
        if tuple(original_size) == tuple(masks.shape[-2:]):
            # Bilinear onto the same grid samples every pixel at weight 1: the identity.
            return masks
        if out is not None:
            size = [int(v) for v in original_size]
            return torch.ops.aten.upsample_bilinear2d.out(masks, size, False, None, None, out=out)
        return F.interpolate(masks, original_size, mode="bilinear", align_corners=False)
