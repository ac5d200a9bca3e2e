"""Readers for users' own data, as datasets of (H x W x 3 uint8 image, M x H x W bool masks):

- an image + mask folder: ``images/NAME.jpg`` with ``masks/NAME.png`` (a binary mask or a label
  map, one mask per nonzero value) and/or ``masks/NAME_*.png`` (one file per mask); the folder
  names may also be ``Images`` / ``Annotations`` / ``annotations`` / ``JPEGImages``;
- the PerSeg layout ``Images/<obj>/NN.jpg`` + ``Annotations/<obj>/NN.png``;
- a COCO instances JSON (polygons or RLE), images next to it or in ``images``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from samkit.errors import ConfigError
from samkit.image_io import IMAGE_SUFFIXES, load_image, load_mask

IMAGE_DIRS = ("images", "Images", "JPEGImages", "imgs")
MASK_DIRS = ("masks", "Annotations", "annotations", "labels", "gt")


def _find(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def split_label_map(path: Path) -> list[np.ndarray]:
    """One bool mask per nonzero value of a label map (palette index or gray level); an RGB
    mask or a 0/255 (or 0/1) mask gives one mask."""
    arr = np.asarray(Image.open(path))
    if arr.ndim == 3:
        return [load_mask(path)]
    values = [v for v in np.unique(arr) if v != 0]
    if len(values) <= 1 or arr.dtype == bool:
        return [load_mask(path)]
    return [arr == v for v in values]


class ImageMaskFolder:
    """Image + mask pairs found under ``root`` (see the module docstring for the layouts)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        img_dir, mask_dir = _find(self.root, IMAGE_DIRS), _find(self.root, MASK_DIRS)
        if img_dir is None or mask_dir is None:
            raise ConfigError(
                f"{self.root} has no image/mask folders: expected images/ (or Images/, "
                "JPEGImages/) next to masks/ (or Annotations/)"
            )
        self.items: list[tuple[Path, list[Path]]] = []
        for img in sorted(p for p in img_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            rel = img.relative_to(img_dir).with_suffix("")
            base = mask_dir / rel
            found = [base.with_suffix(".png")] if base.with_suffix(".png").exists() else []
            found += sorted(base.parent.glob(f"{base.name}_*.png")) if base.parent.is_dir() else []
            if found:
                self.items.append((img, found))
        if not self.items:
            raise ConfigError(
                f"no image in {img_dir} has a mask in {mask_dir} with the same name (.png); "
                "name masks like the images (a.jpg -> a.png or a_1.png, a_2.png)"
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        img_path, mask_paths = self.items[i]
        image = load_image(img_path)
        masks = [m for p in mask_paths for m in split_label_map(p)]
        for p, m in zip(mask_paths, masks):
            if m.shape != image.shape[:2]:
                raise ConfigError(
                    f"mask {p} is {m.shape[1]}x{m.shape[0]} but its image is "
                    f"{image.shape[1]}x{image.shape[0]}; masks must have the image's size"
                )
        return image, np.stack(masks)


class CocoDataset:
    """A COCO instances JSON: one item per image that has non-crowd annotations."""

    def __init__(self, json_path: str | Path, image_dir: str | Path | None = None) -> None:
        from pycocotools.coco import COCO

        self.path = Path(json_path)
        if not self.path.is_file():
            raise ConfigError(f"COCO annotation file {self.path} does not exist")
        self.coco = COCO(str(self.path))
        if image_dir is None:
            cand = self.path.parent / "images"
            image_dir = cand if cand.is_dir() else self.path.parent
        self.image_dir = Path(image_dir)
        self.ids = [
            i for i in sorted(self.coco.getImgIds()) if self.coco.getAnnIds(imgIds=i, iscrowd=False)
        ]
        if not self.ids:
            raise ConfigError(f"{self.path} has no images with (non-crowd) annotations")

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        info = self.coco.loadImgs(self.ids[i])[0]
        image = load_image(self.image_dir / info["file_name"])
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=info["id"], iscrowd=False))
        masks = [self.coco.annToMask(a).astype(bool) for a in anns]
        return image, np.stack(masks)


def open_folder_or_coco(spec: str | Path, image_dir: str | Path | None = None):
    """A COCO .json, or a folder in one of the image + mask layouts."""
    p = Path(spec)
    if p.suffix.lower() == ".json":
        return CocoDataset(p, image_dir)
    if not p.is_dir():
        raise ConfigError(f"--data {spec}: not a folder, a COCO .json or 'synthetic'")
    return ImageMaskFolder(p)
