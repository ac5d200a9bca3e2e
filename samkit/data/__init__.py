"""Datasets of (image, masks): synthetic scenes, image+mask folders, PerSeg, COCO and HQSeg.

``open_dataset`` is the one place where a ``--data`` string of the CLI becomes a dataset.
"""

from __future__ import annotations

from typing import Literal

SYNTHETIC_TRAIN_SEED = 1  # training scenes
SYNTHETIC_EVAL_SEED = 1000  # held-out scenes for evaluation
PHOTO_TRAIN_SEED = 1  # photo-like copy-paste scenes (samkit.data.photo_scenes), training sprites
PHOTO_EVAL_SEED = 1000  # held-out scenes, drawn from the held-out sprites and backgrounds


def open_dataset(
    spec: str,
    size: int,
    *,
    split: Literal["train", "eval"] = "train",
    limit: int | None = None,
    images: str | None = None,
):  # type: ignore[no-untyped-def]
    """'synthetic[:SEED]', 'photo[:SEED]', 'mix[:SEED]', an image+mask folder, a PerSeg folder or
    a COCO .json -> a dataset.

    Generated scenes are drawn at ``size`` px; without a seed, ``split`` picks the training or the
    held-out evaluation seed. 'photo' scenes paste sprites over photos (the assets of
    scripts/build_training_assets.py in $SAMKIT_ASSETS, default runs/assets); the eval split uses
    only held-out sprites and backgrounds. 'mix' is 3/4 'photo' and 1/4 'synthetic' scenes.
    ``limit`` caps the length of a generated evaluation set.
    """
    if spec.split(":")[0] in ("photo", "mix"):
        from samkit.data.photo_scenes import (
            AssetLibrary,
            MixDataset,
            PhotoSceneDataset,
            assets_root,
        )

        default = PHOTO_TRAIN_SEED if split == "train" else PHOTO_EVAL_SEED
        seed = int(spec.split(":")[1]) if ":" in spec else default
        length = {"length": limit} if split == "eval" and limit else {}
        photo = PhotoSceneDataset(
            AssetLibrary.from_folder(assets_root(), split), seed=seed, size=size, **length
        )
        return MixDataset(photo, seed=seed, **length) if spec.startswith("mix") else photo
    if spec.startswith("synthetic"):
        from samkit.data.synthetic import SyntheticDataset

        default = SYNTHETIC_TRAIN_SEED if split == "train" else SYNTHETIC_EVAL_SEED
        seed = int(spec.split(":")[1]) if ":" in spec else default
        if split == "eval":
            return SyntheticDataset(seed=seed, size=size, length=limit)
        return SyntheticDataset(seed=seed, size=size)
    from samkit.data.folders import open_folder_or_coco

    return open_folder_or_coco(spec, images)
