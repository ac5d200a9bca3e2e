"""Pure networks: no file access, no printing, no downloads."""

from samkit.models.configs import CONFIGS, SamConfig, build_sam
from samkit.models.image_encoder import ImageEncoderViT
from samkit.models.mask_decoder import MaskDecoder, MaskDecoderHQ
from samkit.models.prompt_encoder import PromptEncoder
from samkit.models.sam import ImageFeatures, Sam
from samkit.models.transformer import PersamGuidance, TwoWayTransformer

__all__ = [
    "CONFIGS",
    "ImageEncoderViT",
    "ImageFeatures",
    "MaskDecoder",
    "MaskDecoderHQ",
    "PersamGuidance",
    "PromptEncoder",
    "Sam",
    "SamConfig",
    "TwoWayTransformer",
    "build_sam",
]
