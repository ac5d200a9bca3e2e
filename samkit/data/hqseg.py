"""Reader for the HQSeg-44K layouts HQ-SAM trains and evaluates on: one object per image.

- ``im/*.jpg`` + ``gt/*.png`` (DIS5K),
- ``*.jpg`` and ``*.png`` with the same stem in one folder (CascadePSP: DUTS, ECSSD, FSS,
  MSRA-10K),
- ``images_train`` + ``masks_train``, ``images_test`` + ``masks_test`` (ThinObject5K),
  ``images`` + ``masks`` (COIFT), ``images`` + ``masks_max255`` (HRSOD).

A folder holding several of these (the ``data/`` root of the official README) is searched
recursively. Ground truth is ``channel 0 > 128``, as the official loader and evaluator read it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from samkit.errors import ConfigError
from samkit.image_io import load_image

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
PAIRED_DIRS = (
    ("im", "gt"),
    ("images_train", "masks_train"),
    ("images_test", "masks_test"),
    ("images", "masks_max255"),
    ("images", "masks"),
)


def _pairs_in(img_dir: Path, mask_dir: Path) -> list[tuple[Path, Path]]:
    out = []
    for img in sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_EXTS):
        m = mask_dir / (img.stem + ".png")
        if m.exists():
            out.append((img, m))
    return out


def find_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(image, mask) paths under ``root`` in any of the layouts above."""
    pairs: list[tuple[Path, Path]] = []
    dirs = [root, *sorted(p for p in root.rglob("*") if p.is_dir())]
    used: set[Path] = set()
    for d in dirs:
        if d in used:
            continue
        for im, gt in PAIRED_DIRS:
            if (d / im).is_dir() and (d / gt).is_dir():
                pairs += _pairs_in(d / im, d / gt)
                used |= {d / im, d / gt}
                break
        else:
            jpgs = [p for p in d.iterdir() if p.suffix.lower() in (".jpg", ".jpeg")]
            pairs += [
                (p, p.with_suffix(".png")) for p in sorted(jpgs) if p.with_suffix(".png").exists()
            ]
    return pairs


def load_gt(path: Path) -> np.ndarray:
    """H x W bool: channel 0 of the mask > 128 (a 0/1 mask counts as 0/255)."""
    arr = np.asarray(Image.open(path))
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.dtype == bool or arr.max() <= 1:
        return arr.astype(bool)
    return arr > 128


class HQSegFolder:
    """Image + single-object mask pairs: item i is (H x W x 3 uint8, 1 x H x W bool)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ConfigError(f"{self.root} is not a folder")
        self.items = find_pairs(self.root)
        if not self.items:
            raise ConfigError(
                f"found no image/mask pairs under {self.root}: expected im/ + gt/, "
                "images/ + masks/, or NAME.jpg next to NAME.png"
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        img_path, mask_path = self.items[i]
        image = load_image(img_path)
        gt = load_gt(mask_path)
        if gt.shape != image.shape[:2]:
            raise ConfigError(
                f"mask {mask_path} is {gt.shape[1]}x{gt.shape[0]} but its image is "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        return image, gt[None]


def open_hq_dataset(spec: str, size: int, limit: int | None = None, train: bool = True):
    """'synthetic-thin[:SEED]' (thin scenes at ``size`` px; seed 1 for training, 1000 held out
    for evaluation by default) or a folder in an HQSeg-44K layout -> a dataset of (image, masks).
    """
    if spec.startswith("synthetic-thin"):
        from samkit.data.thin import ThinDataset

        seed = int(spec.split(":")[1]) if ":" in spec else (1 if train else 1000)
        return ThinDataset(seed, size, length=limit or 10_000_000)
    return HQSegFolder(spec)
