"""Copy-paste scenes that look like photographs, with exact masks: sprites with alpha (colour emoji,
icons, photo-textured shapes) pasted over crops of real photos.

A scene is a background crop with several objects pasted over each other, each with a random
scale, rotation, mirror, colour / brightness jitter, blur and an optional drop shadow; later objects
occlude earlier ones and the earlier masks lose what is covered. An object may carry a part (a
smaller sprite pasted inside it): it then gives two masks, ``whole`` and ``part``, the ambiguity
SAM's several outputs are for. Masks come from the pasted alpha (> 0.5), never from the pixels, so
they are exact whatever the jitter does to the image.

Assets are built by ``scripts/build_training_assets.py`` into a folder (default runs/assets):
sprites/FAMILY/NAME.png (RGBA) and backgrounds/NAME.jpg. A hash of each file name puts it in the
training or the held-out set (``is_held_out``), so evaluation scenes show sprites and backgrounds
never trained on. Everything is seeded: item i of ``PhotoSceneDataset(assets, seed)`` depends only
on (seed, i).
"""

from __future__ import annotations

import os
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from samkit.data.synthetic import SceneGenerator, draw_shape
from samkit.errors import ConfigError

DEFAULT_ASSETS = "runs/assets"
HELD_OUT_PERCENT = 15  # of sprites and backgrounds, by file-name hash


def is_held_out(name: str) -> bool:
    """Whether an asset (by file name) belongs to the held-out evaluation set."""
    return zlib.crc32(name.encode()) % 100 < HELD_OUT_PERCENT


@dataclass
class PhotoScene:
    """image: H x W x 3 uint8. masks: M x H x W bool (visible, after occlusion). object_ids /
    kinds: per mask, the object it belongs to and 0 whole / 1 part. full: N x H x W bool, each
    object's whole mask as pasted, before later objects covered it (N objects, in paste order)."""

    image: np.ndarray
    masks: np.ndarray
    object_ids: np.ndarray
    kinds: np.ndarray
    full: np.ndarray


class AssetLibrary:
    """Sprites (RGBA uint8) and backgrounds (RGB uint8) of one split, read lazily and cached."""

    def __init__(
        self,
        sprites: list[np.ndarray | Path],
        backgrounds: list[np.ndarray | Path],
        cache: int = 1024,
    ) -> None:
        if not sprites or not backgrounds:
            raise ConfigError("an asset library needs at least one sprite and one background")
        self.sprites, self.backgrounds = sprites, backgrounds
        self._cache: OrderedDict[Path, np.ndarray] = OrderedDict()
        self._cache_size = cache

    @classmethod
    def from_folder(
        cls, root: str | os.PathLike, split: Literal["train", "eval"] = "train"
    ) -> AssetLibrary:
        """The assets of ``root`` (scripts/build_training_assets.py output) in one split."""
        root = Path(root)
        sprites = sorted((root / "sprites").glob("*/*.png"))
        bgs = sorted((root / "backgrounds").glob("*.jpg"))
        if not sprites or not bgs:
            raise ConfigError(
                f"no training assets in {root} (sprites/*/*.png, backgrounds/*.jpg): build them "
                f"with `python scripts/build_training_assets.py --out {root}` or point "
                "SAMKIT_ASSETS at the folder"
            )
        held = split == "eval"
        return cls(
            [p for p in sprites if is_held_out(p.name) == held],
            [p for p in bgs if is_held_out(p.name) == held],
        )

    def _read(self, item: np.ndarray | Path, flag: int) -> np.ndarray:
        if isinstance(item, np.ndarray):
            return item
        hit = self._cache.get(item)
        if hit is None:
            raw = cv2.imread(str(item), flag)
            if raw is None:
                raise ConfigError(f"cannot read training asset {item}")
            hit = cv2.cvtColor(raw, cv2.COLOR_BGRA2RGBA if raw.shape[2] == 4 else cv2.COLOR_BGR2RGB)
            self._cache[item] = hit
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(item)
        return hit

    def sprite(self, i: int) -> np.ndarray:
        return self._read(self.sprites[i], cv2.IMREAD_UNCHANGED)

    def background(self, i: int) -> np.ndarray:
        return self._read(self.backgrounds[i], cv2.IMREAD_COLOR)


# -- pieces of a scene ------------------------------------------------------------------------


def background_crop(rng: np.random.Generator, bg: np.ndarray, size: int) -> np.ndarray:
    """A random square crop (20-100% of the short side), mirrored at random -> size x size
    float32."""
    h, w = bg.shape[:2]
    side = max(int(min(h, w) * rng.uniform(0.2, 1.0)), 8)
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = cv2.resize(bg[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return crop.astype(np.float32)


def textured_shape(rng: np.random.Generator, texture: np.ndarray, side: int = 128) -> np.ndarray:
    """A procedural shape filled with a crop of a photo -> side x side x 4 uint8 RGBA."""
    shape = str(rng.choice(["ellipse", "polygon", "star", "blob"]))
    alpha = draw_shape(rng, shape, side)
    rgb = background_crop(rng, texture, side)
    return np.dstack([rgb.astype(np.uint8), alpha.astype(np.uint8) * 255])


def with_part(rng: np.random.Generator, whole: np.ndarray, part: np.ndarray) -> np.ndarray:
    """Paste ``part`` (RGBA) at 25-50% size onto ``whole`` (RGBA), centred on an opaque pixel.
    Returns H x W x 5: RGBA of the union and, last, the part's alpha."""
    h, w = whole.shape[:2]
    s = rng.uniform(0.25, 0.5) * max(h, w) / max(part.shape[:2])
    ph, pw = max(int(part.shape[0] * s), 2), max(int(part.shape[1] * s), 2)
    part = cv2.resize(part, (pw, ph), interpolation=cv2.INTER_AREA)
    ys, xs = np.nonzero(whole[..., 3] > 127)
    k = int(rng.integers(len(ys)))
    y0, x0 = int(ys[k]) - ph // 2, int(xs[k]) - pw // 2
    part_alpha = np.zeros((h, w), np.float32)
    part_rgb = np.zeros((h, w, 3), np.float32)
    sy, sx = slice(max(y0, 0), min(y0 + ph, h)), slice(max(x0, 0), min(x0 + pw, w))
    py, px = slice(sy.start - y0, sy.stop - y0), slice(sx.start - x0, sx.stop - x0)
    part_alpha[sy, sx] = part[py, px, 3] / 255.0
    part_rgb[sy, sx] = part[py, px, :3]
    a = part_alpha[..., None]
    rgb = whole[..., :3] * (1 - a) + part_rgb * a
    alpha = np.maximum(whole[..., 3] / 255.0, part_alpha)
    return np.dstack([rgb, alpha * 255, part_alpha * 255]).astype(np.float32)


def jitter_colors(rng: np.random.Generator, rgb: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Brightness, contrast, saturation and a small hue shift of float32 RGB in 0..255."""
    out = rgb * rng.uniform(1 - 0.35 * strength, 1 + 0.25 * strength)
    mean = out.mean()
    out = (out - mean) * rng.uniform(1 - 0.3 * strength, 1 + 0.3 * strength) + mean
    grey = out.mean(-1, keepdims=True)
    out = grey + (out - grey) * rng.uniform(1 - 0.5 * strength, 1 + 0.3 * strength)
    if rng.random() < 0.3 * strength:
        out = out[..., rng.permutation(3)]  # a different colour of the same object
    return np.clip(out, 0, 255)


def place(
    rng: np.random.Generator, layers: np.ndarray, size: int, scale: tuple[float, float]
) -> np.ndarray:
    """Warp an h x w x C float32 stack (RGB, alpha 0..255, optional part alpha) into the scene
    with a random scale (longest side a ``scale`` fraction of the scene, log-uniform), rotation,
    mirror and position (the centre inside the scene) -> size x size x C. The colour is warped
    premultiplied by alpha, so transparent pixels never bleed a dark fringe into the edges."""
    h, w = layers.shape[:2]
    side = np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]))) * size
    s = side / max(h, w)
    ang = rng.uniform(-25, 25) if rng.random() < 0.8 else rng.uniform(-180, 180)
    if rng.random() < 0.5:
        layers = layers[:, ::-1]
    cx, cy = rng.uniform(0.1, 0.9, 2) * size
    M = cv2.getRotationMatrix2D((w / 2, h / 2), ang, s)
    M[:, 2] += (cx - w / 2, cy - h / 2)
    pre = layers.astype(np.float32)
    pre[..., :3] *= pre[..., 3:4] / 255.0
    out = cv2.warpAffine(pre, M, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
    out = out.reshape(size, size, -1)
    out[..., :3] *= 255.0 / np.maximum(out[..., 3:4], 1e-3)
    return out


# -- scenes -----------------------------------------------------------------------------------


def compose_scene(
    rng: np.random.Generator,
    assets: AssetLibrary,
    size: int = 160,
    n_objects: tuple[int, int] = (1, 6),
    scale: tuple[float, float] = (0.2, 0.95),
    p_textured: float = 0.25,
    p_part: float = 0.3,
    p_shadow: float = 0.4,
    jitter: bool = True,
    min_area: int | None = None,
) -> PhotoScene:
    """Draw one scene of ``size`` x ``size`` px from ``assets`` (see the module docstring).
    ``jitter=False`` turns off colour jitter, blur, shadows, noise and JPEG (tests)."""
    min_area = max(int(size * size * 0.0015), 4) if min_area is None else min_area
    image = background_crop(
        rng, assets.background(int(rng.integers(len(assets.backgrounds)))), size
    )
    if jitter:
        image = jitter_colors(rng, image, 0.5)
    n = int(rng.integers(n_objects[0], n_objects[1] + 1))
    full: list[np.ndarray] = []
    visible: list[list[np.ndarray]] = []
    for _ in range(n):
        if rng.random() < p_textured:
            bg = assets.background(int(rng.integers(len(assets.backgrounds))))
            sprite = textured_shape(rng, bg)
        else:
            sprite = assets.sprite(int(rng.integers(len(assets.sprites))))
        if rng.random() < p_part:
            part = assets.sprite(int(rng.integers(len(assets.sprites))))
            stack = with_part(rng, sprite, part)
        else:
            stack = sprite.astype(np.float32)
        warped = place(rng, stack, size, scale)
        rgb, alpha = warped[..., :3], warped[..., 3] / 255.0
        if jitter:
            rgb = jitter_colors(rng, rgb)
            if rng.random() < p_shadow:  # darken the background under a shifted, blurred alpha
                dx, dy = rng.uniform(-0.04, 0.04, 2) * size
                k = int(rng.integers(1, 4)) * 2 + 1
                sh = cv2.warpAffine(alpha, np.float32([[1, 0, dx], [0, 1, dy]]), (size, size))
                sh = cv2.GaussianBlur(sh, (0, 0), k / 2) * rng.uniform(0.3, 0.7)
                image *= 1 - sh[..., None]
            if rng.random() < 0.2:
                rgb = cv2.GaussianBlur(rgb, (0, 0), rng.uniform(0.5, 1.2))
        whole = alpha > 0.5
        soft = cv2.GaussianBlur(alpha, (3, 3), 0) if jitter and rng.random() < 0.5 else alpha
        image = image * (1 - soft[..., None]) + rgb * soft[..., None]
        for prev in visible:  # the new object hides what it covers
            for m in prev:
                m &= ~whole
        masks = [whole.copy()]
        if warped.shape[2] == 5:
            masks.append((warped[..., 4] / 255.0 > 0.5) & whole)
        visible.append(masks)
        full.append(whole)
    if jitter:
        if rng.random() < 0.3:
            image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 1.0))
        if rng.random() < 0.5:
            image += rng.normal(0, rng.uniform(1, 6), image.shape).astype(np.float32)
    img = np.clip(image, 0, 255).astype(np.uint8)
    if jitter and rng.random() < 0.4:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(40, 95))])
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    out, oids, kinds = [], [], []
    for oi, ms in enumerate(visible):
        for k, m in enumerate(ms):
            if m.sum() >= min_area:
                out.append(m)
                oids.append(oi)
                kinds.append(k)
    arr = np.stack(out) if out else np.zeros((0, size, size), bool)
    fulls = np.stack(full) if full else np.zeros((0, size, size), bool)
    return PhotoScene(img, arr, np.array(oids, int), np.array(kinds, int), fulls)


def assets_root() -> Path:
    return Path(os.environ.get("SAMKIT_ASSETS", DEFAULT_ASSETS))


class PhotoSceneDataset:
    """Photo-like scenes for the trainer: item i is (image H x W x 3 uint8, masks M x H x W bool)
    of ``compose_scene(default_rng([seed, i]), assets, size)``; ``length`` is nominal."""

    def __init__(
        self,
        assets: AssetLibrary,
        seed: int = 0,
        size: int = 160,
        length: int = 10_000_000,
        **kwargs,
    ) -> None:
        self.assets, self.seed, self.size, self.length = assets, seed, size, length
        self.kwargs = kwargs

    def __len__(self) -> int:
        return self.length

    def scene(self, i: int) -> PhotoScene:
        return compose_scene(
            np.random.default_rng([self.seed, i]), self.assets, self.size, **self.kwargs
        )

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.scene(i)
        return s.image, s.masks


class MixDataset:
    """Photo-like scenes and procedural scenes (samkit.data.synthetic) in one stream: item i is a
    photo scene with probability ``p_photo`` (decided by (seed, i)), else a procedural one."""

    def __init__(
        self,
        photo: PhotoSceneDataset,
        seed: int = 0,
        p_photo: float = 0.75,
        length: int = 10_000_000,
    ) -> None:
        self.photo, self.seed, self.p_photo, self.length = photo, seed, p_photo, length
        self.procedural = SceneGenerator(seed + 500_000, photo.size)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if np.random.default_rng([self.seed, i, 7]).random() < self.p_photo:
            return self.photo[i]
        s = self.procedural.scene(i)
        return s.image, s.masks
