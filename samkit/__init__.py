"""samkit: promptable image segmentation — Segment Anything, HQ-SAM and PerSAM, done properly.

import samkit
model = samkit.load("samkit-tiny")          # or "vit_b", "hq_vit_l", a .pth/.safetensors path
pred = samkit.Predictor(model)
pred.set_image("photo.jpg")
res = pred.predict(points=[[120, 80]], labels=[1])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from samkit.checkpoints import load
from samkit.errors import (
    CheckpointError,
    ChecksumError,
    ConfigError,
    ImageError,
    PromptError,
    SamkitError,
    StateError,
)
from samkit.predictor import ImageEmbedding, Prediction, Predictor

if TYPE_CHECKING:  # imported on first use at run time (they pull in OpenCV, pycocotools, ...)
    from samkit.automatic import MaskGenerator
    from samkit.persam import MultiPerSAM, PerSAM, PersonalizedMask, PersonalizedObjects

__version__ = "0.1.0"

_LAZY = {
    "MaskGenerator": "samkit.automatic",
    "PerSAM": "samkit.persam",
    "PersonalizedMask": "samkit.persam",
    "MultiPerSAM": "samkit.persam",
    "PersonalizedObjects": "samkit.persam",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'samkit' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "CheckpointError",
    "ChecksumError",
    "ConfigError",
    "ImageEmbedding",
    "ImageError",
    "MaskGenerator",
    "MultiPerSAM",
    "PerSAM",
    "PersonalizedMask",
    "PersonalizedObjects",
    "Prediction",
    "Predictor",
    "PromptError",
    "SamkitError",
    "StateError",
    "load",
]
