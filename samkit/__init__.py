"""samkit: promptable image segmentation — Segment Anything, HQ-SAM and PerSAM, done properly.

import samkit
model = samkit.load("samkit-tiny")          # or "vit_b", "hq_vit_l", a .pth/.safetensors path
pred = samkit.Predictor(model)
pred.set_image("photo.jpg")
res = pred.predict(points=[[120, 80]], labels=[1])
"""

from __future__ import annotations

from typing import Any

from samkit.checkpoints import load
from samkit.errors import SamkitError
from samkit.predictor import ImageEmbedding, Prediction, Predictor

__version__ = "0.1.0"

_LAZY = {
    "MaskGenerator": "samkit.automatic.generator",
    "PerSAM": "samkit.persam.persam",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'samkit' has no attribute '{name}'")


__all__ = [
    "ImageEmbedding",
    "MaskGenerator",
    "PerSAM",
    "Prediction",
    "Predictor",
    "SamkitError",
    "load",
]
