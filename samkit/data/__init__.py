"""Datasets of (image, masks): synthetic scenes, image+mask folders, PerSeg, COCO and HQSeg.

``open_dataset`` is the one place where a ``--data`` string of the CLI becomes a dataset.
"""

from __future__ import annotations

from typing import Literal

SYNTHETIC_TRAIN_SEED = 1  # training scenes
SYNTHETIC_EVAL_SEED = 1000  # held-out scenes for evaluation


def open_dataset(
    spec: str,
    size: int,
    *,
    split: Literal["train", "eval"] = "train",
    limit: int | None = None,
    images: str | None = None,
):  # type: ignore[no-untyped-def]
    """'synthetic[:SEED]', an image+mask folder, a PerSeg folder or a COCO .json -> a dataset.

    Synthetic scenes are drawn at ``size`` px; without a seed, ``split`` picks the training or the
    held-out evaluation seed. ``limit`` caps the length of a synthetic evaluation set.
    """
    if spec.startswith("synthetic"):
        from samkit.data.synthetic import SyntheticDataset

        default = SYNTHETIC_TRAIN_SEED if split == "train" else SYNTHETIC_EVAL_SEED
        seed = int(spec.split(":")[1]) if ":" in spec else default
        if split == "eval":
            return SyntheticDataset(seed=seed, size=size, length=limit)
        return SyntheticDataset(seed=seed, size=size)
    from samkit.data.folders import open_folder_or_coco

    return open_folder_or_coco(spec, images)
