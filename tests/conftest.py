"""Shared fixtures: twin models (official + samkit, same random weights) and test images."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "perseg-examples"


def perseg_image(name: str) -> np.ndarray:
    """A real photo from ../shared/data; skip (with the reason) where it is not present."""
    path = SHARED_DATA / "Images" / name
    if not path.exists():
        pytest.skip(f"real photos not present at {SHARED_DATA} (only in the samkit workspace)")
    from samkit.image_io import load_image

    return load_image(path)


def synthetic_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A made-up RGB image with a few flat shapes over a gradient."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / w, yy * 255 / h, np.full((h, w), 90.0)], -1)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.1, 0.3) * min(h, w)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r**2] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 8, img.shape)
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def small_cfg():  # type: ignore[no-untyped-def]
    from samkit.models import SamConfig

    return SamConfig(
        encoder_embed_dim=64,
        encoder_depth=2,
        encoder_num_heads=2,
        encoder_global_attn_indexes=(1,),
    )


@pytest.fixture(scope="session")
def twins(small_cfg):  # type: ignore[no-untyped-def]
    from official import twin_models

    return twin_models(small_cfg, seed=0)


@pytest.fixture(scope="session")
def twins_hq(small_cfg):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from official import twin_models

    return twin_models(replace(small_cfg, hq=True), seed=1)


@pytest.fixture(scope="module")
def one_thread():  # type: ignore[no-untyped-def]
    """Torch on one thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    parity runs of official and samkit code stay comparable and leave the other core free."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
