"""Procedural scenes with ground-truth masks: the data the bundled model is trained on.

A scene is a textured background with several objects drawn over each other (so later objects
occlude earlier ones). Each object is a *concept* (a shape with a texture and optional nested parts)
placed with a pose (rotation, scale, position). A concept is drawn once in its own canonical frame
and then warped into the scene, so the same concept can reappear in any scene with a new pose,
scale and background: what personalization (PerSAM) needs.

Every object gives up to three masks, the ambiguity SAM's three outputs are meant for:
``whole`` (the object with its parts), ``part`` (a shape inside it) and ``subpart`` (a shape inside
the part). Everything is seeded: ``SceneGenerator(seed).scene(i)`` is the same array every time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

CANVAS = 128  # side of the canonical frame a concept is drawn in
SHAPES = ("ellipse", "polygon", "star", "blob", "ring", "line")
TEXTURES = ("flat", "noise", "stripes", "checkers", "gradient")
KINDS = ("whole", "part", "subpart")


@dataclass
class Concept:
    """An object identity: canonical image (C x C x 3 uint8) and masks (C x C bool) of the whole
    object and its nested parts (part inside whole, subpart inside part)."""

    shape: str
    texture: str
    image: np.ndarray
    masks: list[np.ndarray]  # [whole, part?, subpart?]


@dataclass
class Scene:
    """One rendered scene.

    image: H x W x 3 uint8. masks: M x H x W bool (visible parts, after occlusion).
    object_ids / kinds / concept_ids: per mask, which object it belongs to, 0 whole / 1 part /
    2 subpart, and the index of the given concept it shows (-1 for a random object).
    """

    image: np.ndarray
    masks: np.ndarray
    object_ids: np.ndarray
    kinds: np.ndarray
    concept_ids: np.ndarray
    concepts: list[Concept] = field(default_factory=list)


# -- shapes in the canonical frame ------------------------------------------------------------


def _fill(pts: np.ndarray, size: int) -> np.ndarray:
    m = np.zeros((size, size), np.uint8)
    cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)
    return m.astype(bool)


def _radial(rng: np.random.Generator, r: np.ndarray, size: int) -> np.ndarray:
    n = len(r)
    a = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 2 * np.pi)
    c = size / 2
    return _fill(np.stack([c + r * np.cos(a), c + r * np.sin(a)], 1), size)


def draw_shape(rng: np.random.Generator, shape: str, size: int = CANVAS) -> np.ndarray:
    """A filled shape, centred, roughly spanning the size x size canvas -> bool mask."""
    R = size * 0.46
    c = size / 2
    m = np.zeros((size, size), np.uint8)
    if shape == "ellipse":
        axes = (int(R * rng.uniform(0.55, 1)), int(R * rng.uniform(0.35, 1)))
        cv2.ellipse(m, (int(c), int(c)), axes, rng.uniform(0, 180), 0, 360, 1, -1)
    elif shape == "polygon":
        n = int(rng.integers(3, 9))
        a = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = R * rng.uniform(0.6, 1.0, n)
        return _fill(np.stack([c + r * np.cos(a), c + r * np.sin(a)], 1), size)
    elif shape == "star":
        n = int(rng.integers(4, 8))
        r = np.tile([R, R * rng.uniform(0.35, 0.6)], n)
        return _radial(rng, r, size)
    elif shape == "blob":
        a = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        r = np.ones_like(a)
        for k in range(2, 5):
            r += rng.uniform(0, 0.25) * np.sin(k * a + rng.uniform(0, 2 * np.pi))
        return _radial(rng, R * r / r.max(), size)
    elif shape == "ring":
        axes = (int(R * rng.uniform(0.7, 1)), int(R * rng.uniform(0.5, 1)))
        t = int(rng.integers(6, 14))
        cv2.ellipse(m, (int(c), int(c)), axes, rng.uniform(0, 180), 0, 360, 1, t)
    elif shape == "line":
        k = int(rng.integers(2, 4))
        xs = np.linspace(c - R, c + R, k + 1)
        ys = c + rng.uniform(-R * 0.5, R * 0.5, k + 1)
        pts = np.stack([xs, ys], 1).round().astype(np.int32)
        cv2.polylines(m, [pts], False, 1, int(rng.integers(7, 14)))
    else:
        raise ValueError(f"unknown shape {shape!r}; choose one of {SHAPES}")
    return m.astype(bool)


# -- textures ---------------------------------------------------------------------------------


def _color(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3).astype(np.float32)


def draw_texture(rng: np.random.Generator, texture: str, h: int, w: int) -> np.ndarray:
    """An h x w x 3 float32 texture in 0..255 made of two random colours."""
    c0, c1 = _color(rng), _color(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    th = rng.uniform(0, np.pi)
    u = xx * np.cos(th) + yy * np.sin(th)
    if texture == "flat":
        t = np.zeros((h, w), np.float32)
    elif texture == "noise":
        cell = int(rng.integers(3, 12))
        small = rng.random((h // cell + 2, w // cell + 2)).astype(np.float32)
        t = cv2.resize(small, (w + 2 * cell, h + 2 * cell), interpolation=cv2.INTER_CUBIC)
        t = np.clip(t[cell : cell + h, cell : cell + w], 0, 1)
    elif texture == "stripes":
        period = rng.uniform(5, 20)
        t = (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
    elif texture == "checkers":
        s = rng.uniform(5, 16)
        v = -xx * np.sin(th) + yy * np.cos(th)
        t = ((np.floor(u / s) + np.floor(v / s)) % 2).astype(np.float32)
    elif texture == "gradient":
        t = (u - u.min()) / max(float(u.max() - u.min()), 1.0)
    else:
        raise ValueError(f"unknown texture {texture!r}; choose one of {TEXTURES}")
    return c0 * (1 - t[..., None]) + c1 * t[..., None]


# -- concepts and scenes ----------------------------------------------------------------------


def _inner(rng: np.random.Generator, outer: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """A smaller filled shape placed inside ``outer`` (clipped to it); may be empty."""
    size = outer.shape[0]
    ys, xs = np.nonzero(cv2.erode(outer.astype(np.uint8), np.ones((5, 5), np.uint8)))
    if len(ys) == 0:
        return np.zeros_like(outer)
    i = rng.integers(len(ys))
    shape = str(rng.choice(["ellipse", "polygon", "star", "blob"]))
    s = rng.uniform(*scale)
    base = draw_shape(rng, shape, size).astype(np.uint8)
    M = np.float32([[s, 0, xs[i] - s * size / 2], [0, s, ys[i] - s * size / 2]])
    part = cv2.warpAffine(base, M, (size, size), flags=cv2.INTER_NEAREST).astype(bool)
    return part & outer


def make_concept(rng: np.random.Generator, shape: str | None = None) -> Concept:
    """A random object identity: shape, texture, colours and up to two nested parts."""
    shape = shape or str(rng.choice(SHAPES, p=[0.2, 0.2, 0.15, 0.25, 0.1, 0.1]))
    texture = str(rng.choice(TEXTURES))
    whole = draw_shape(rng, shape)
    image = draw_texture(rng, texture, CANVAS, CANVAS)
    masks = [whole]
    if shape not in ("ring", "line") and rng.random() < 0.5:
        part = _inner(rng, whole, (0.3, 0.55))
        if part.sum() > 150:
            image[part] = draw_texture(rng, str(rng.choice(TEXTURES)), CANVAS, CANVAS)[part]
            masks.append(part)
            if rng.random() < 0.5:
                sub = _inner(rng, part, (0.12, 0.25))
                if sub.sum() > 60:
                    image[sub] = _color(rng)
                    masks.append(sub)
    return Concept(shape, texture, np.clip(image, 0, 255).astype(np.uint8), masks)


def render_scene(
    rng: np.random.Generator,
    size: int = 160,
    concepts: list[Concept] | None = None,
    n_objects: tuple[int, int] = (2, 6),
    scale: tuple[float, float] = (0.25, 0.6),
    min_area: int = 40,
) -> Scene:
    """Draw a scene of ``size`` x ``size`` px: random new objects up to ``n_objects``, then the
    given ``concepts`` on top (so they are always visible, though they may occlude each other)."""
    bg_tex = str(rng.choice(TEXTURES))
    image = draw_texture(rng, bg_tex, size, size)
    if rng.random() < 0.5:  # low-contrast speckle so backgrounds are never perfectly clean
        image += rng.normal(0, rng.uniform(2, 10), image.shape).astype(np.float32)
    given = list(concepts or [])
    n = max(int(rng.integers(n_objects[0], n_objects[1] + 1)), len(given))
    placed = [make_concept(rng) for _ in range(n - len(given))] + given
    concept_of = [-1] * (n - len(given)) + list(range(len(given)))
    layers: list[list[np.ndarray]] = []
    for c in placed:
        s = rng.uniform(*scale) * size / CANVAS
        ang = rng.uniform(0, 360)
        cx, cy = rng.uniform(0.15, 0.85, 2) * size
        M = cv2.getRotationMatrix2D((CANVAS / 2, CANVAS / 2), ang, s)
        M[:, 2] += (cx - CANVAS / 2, cy - CANVAS / 2)
        img_c, masks_c = c.image, c.masks
        if rng.random() < 0.5:  # mirrored: another pose of the same object
            img_c, masks_c = img_c[:, ::-1].copy(), [m[:, ::-1].copy() for m in masks_c]
        tex = cv2.warpAffine(img_c, M, (size, size), flags=cv2.INTER_LINEAR)
        ms = [
            cv2.warpAffine(m.astype(np.uint8), M, (size, size), flags=cv2.INTER_NEAREST) > 0
            for m in masks_c
        ]
        image[ms[0]] = tex[ms[0]]
        for prev in layers:  # the new object hides what it covers
            for m in prev:
                m &= ~ms[0]
        layers.append(ms)
    masks, oids, kinds, cids = [], [], [], []
    for oi, ms in enumerate(layers):
        for k, m in enumerate(ms):
            if m.sum() >= min_area:
                masks.append(m)
                oids.append(oi)
                kinds.append(k)
                cids.append(concept_of[oi])
    arr = np.stack(masks) if masks else np.zeros((0, size, size), bool)
    img = np.clip(image, 0, 255).astype(np.uint8)
    return Scene(img, arr, np.array(oids), np.array(kinds), np.array(cids), placed)


class SceneGenerator:
    """Seeded scene source: ``scene(i)`` depends only on (seed, i), so any scene is reproducible
    and disjoint seeds give disjoint train / validation sets."""

    def __init__(self, seed: int = 0, size: int = 160, **kwargs) -> None:
        self.seed, self.size, self.kwargs = seed, size, kwargs

    def rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, i])

    def scene(self, i: int) -> Scene:
        return render_scene(self.rng(i), self.size, **self.kwargs)

    def concept_scenes(self, i: int, n: int = 3) -> tuple[Concept, list[Scene]]:
        """One concept (index i) shown in ``n`` scenes with new poses and backgrounds; its mask
        in each scene is ``masks[(concept_ids == 0) & (kinds == 0)][0]``."""
        rng = np.random.default_rng([self.seed, i, 1])
        concept = make_concept(rng, shape=str(rng.choice(["ellipse", "polygon", "star", "blob"])))
        scenes = [render_scene(rng, self.size, [concept], **self.kwargs) for _ in range(n)]
        return concept, scenes


class SyntheticDataset:
    """Scenes as a dataset for the trainer: item i is (image H x W x 3 uint8, masks M x H x W
    bool) of ``SceneGenerator(seed, size).scene(i)``; ``length`` is nominal (scenes are
    generated on demand, never stored)."""

    def __init__(self, seed: int = 0, size: int = 160, length: int = 10_000_000, **kwargs) -> None:
        self.gen = SceneGenerator(seed, size, **kwargs)
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.gen.scene(i)
        return s.image, s.masks
