"""Procedural scenes of thin, detailed objects: the data HQ-SAM's head is trained and judged on.

Where ``samkit.data.synthetic`` makes mostly compact shapes, every object here has detail that a
coarse mask misses: thin rings, curved wires, lattices (fences, grids), shapes with fine spiky
boundaries, solid shapes with holes, and branching "trees". Objects are drawn at twice the scene
resolution and area-downsampled, so the image has anti-aliased edges while the ground truth is
the sharp ``alpha >= 0.5`` mask. One mask per object (the whole object, after occlusion).

``ThinSceneGenerator(seed).scene(i)`` depends only on (seed, i), as ``SceneGenerator`` does.
"""

from __future__ import annotations

import cv2
import numpy as np

from samkit.data.synthetic import TEXTURES, Scene, draw_texture

THIN_SHAPES = ("ring", "wire", "lattice", "spiky", "holes", "tree")
SUPERSAMPLE = 2


def _thickness(rng: np.random.Generator, size: int, lo: float, hi: float) -> int:
    """A stroke width in supersampled pixels for lo..hi pixels at a 160 px scene."""
    return max(1, int(round(rng.uniform(lo, hi) * size / 160 * SUPERSAMPLE)))


def _wire(rng: np.random.Generator, m: np.ndarray, c: np.ndarray, r: float, size: int) -> None:
    k = int(rng.integers(3, 6))
    ctrl = c + rng.uniform(-r, r, (k, 2))
    t = np.linspace(0, 1, k)
    tt = np.linspace(0, 1, 200)
    pts = np.stack([np.interp(tt, t, ctrl[:, 0]), np.interp(tt, t, ctrl[:, 1])], 1)
    pts = cv2.blur(pts[:, None].astype(np.float32), (1, 31))[:, 0]  # round the corners
    cv2.polylines(m, [np.round(pts).astype(np.int32)], False, 1, _thickness(rng, size, 1, 3))


def _lattice(rng: np.random.Generator, m: np.ndarray, c: np.ndarray, r: float, size: int) -> None:
    ang = rng.uniform(0, np.pi)
    u = np.array([np.cos(ang), np.sin(ang)])
    v = np.array([-u[1], u[0]])
    a, b = r * rng.uniform(0.6, 1), r * rng.uniform(0.6, 1)
    t = _thickness(rng, size, 1, 2.5)
    nu, nv = int(rng.integers(3, 7)), int(rng.integers(2, 6))
    for s in np.linspace(-a, a, nu + 1):
        p0, p1 = c + s * u - b * v, c + s * u + b * v
        cv2.line(m, tuple(np.round(p0).astype(int)), tuple(np.round(p1).astype(int)), 1, t)
    for s in np.linspace(-b, b, nv + 1):
        p0, p1 = c - a * u + s * v, c + a * u + s * v
        cv2.line(m, tuple(np.round(p0).astype(int)), tuple(np.round(p1).astype(int)), 1, t)


def _spiky(rng: np.random.Generator, m: np.ndarray, c: np.ndarray, r: float) -> None:
    n = int(rng.integers(12, 30))
    ang = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False) + rng.uniform(0, np.pi)
    rad = np.where(np.arange(2 * n) % 2 == 0, r, r * rng.uniform(0.35, 0.7, 2 * n))
    rad = rad * rng.uniform(0.8, 1.0, 2 * n)
    pts = np.stack([c[0] + rad * np.cos(ang), c[1] + rad * np.sin(ang)], 1)
    cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)


def _holes(rng: np.random.Generator, m: np.ndarray, c: np.ndarray, r: float, size: int) -> None:
    axes = (int(r * rng.uniform(0.7, 1)), int(r * rng.uniform(0.6, 1)))
    center = tuple(np.round(c).astype(int))
    cv2.ellipse(m, center, axes, rng.uniform(0, 180), 0, 360, 1, -1)
    for _ in range(int(rng.integers(3, 9))):
        p = c + rng.uniform(-0.6, 0.6, 2) * np.array(axes)
        hr = _thickness(rng, size, 1.5, 5)
        cv2.circle(m, tuple(np.round(p).astype(int)), hr, 0, -1)


def _tree(rng: np.random.Generator, m: np.ndarray, c: np.ndarray, r: float, size: int) -> None:
    t0 = _thickness(rng, size, 1.5, 3)
    stack = [(c + np.array([0.0, r]), -np.pi / 2 + rng.uniform(-0.3, 0.3), r * 0.6, t0, 0)]
    while stack:
        p, ang, length, t, depth = stack.pop()
        q = p + length * np.array([np.cos(ang), np.sin(ang)])
        cv2.line(m, tuple(np.round(p).astype(int)), tuple(np.round(q).astype(int)), 1, t)
        if depth < 4:
            for da in rng.uniform(0.3, 0.8, 2) * np.array([-1, 1]):
                stack.append(
                    (q, ang + da, length * rng.uniform(0.5, 0.75), max(1, t - 1), depth + 1)
                )


def draw_thin(rng: np.random.Generator, shape: str, size: int) -> np.ndarray:
    """One thin/detailed object somewhere in a size x size scene -> float32 alpha in [0, 1]
    (area-downsampled from a drawing at SUPERSAMPLE x the resolution)."""
    big = size * SUPERSAMPLE
    m = np.zeros((big, big), np.uint8)
    c = rng.uniform(0.25, 0.75, 2) * big
    r = rng.uniform(0.15, 0.35) * big
    if shape == "ring":
        axes = (int(r * rng.uniform(0.6, 1)), int(r * rng.uniform(0.4, 1)))
        center = tuple(np.round(c).astype(int))
        cv2.ellipse(m, center, axes, rng.uniform(0, 180), 0, 360, 1, _thickness(rng, size, 1, 3))
    elif shape == "wire":
        _wire(rng, m, c, r, size)
    elif shape == "lattice":
        _lattice(rng, m, c, r, size)
    elif shape == "spiky":
        _spiky(rng, m, c, r)
    elif shape == "holes":
        _holes(rng, m, c, r, size)
    elif shape == "tree":
        _tree(rng, m, c, r, size)
    else:
        raise ValueError(f"unknown thin shape {shape!r}; choose one of {THIN_SHAPES}")
    return cv2.resize(m.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)


def render_thin_scene(
    rng: np.random.Generator,
    size: int = 160,
    n_objects: tuple[int, int] = (1, 3),
    min_area: int = 20,
) -> Scene:
    """A textured background with ``n_objects`` thin objects drawn over each other; masks are
    M x size x size bool (visible part of each object), ``kinds`` all 0 (whole objects)."""
    image = draw_texture(rng, str(rng.choice(TEXTURES)), size, size)
    if rng.random() < 0.5:
        image += rng.normal(0, rng.uniform(2, 8), image.shape).astype(np.float32)
    layers: list[np.ndarray] = []
    for _ in range(int(rng.integers(n_objects[0], n_objects[1] + 1))):
        alpha = draw_thin(rng, str(rng.choice(THIN_SHAPES)), size)
        tex = draw_texture(rng, str(rng.choice(TEXTURES)), size, size)
        image = alpha[..., None] * tex + (1 - alpha[..., None]) * image
        mask = alpha >= 0.5
        for prev in layers:
            prev &= ~mask
        layers.append(mask)
    masks = [m for m in layers if m.sum() >= min_area]
    arr = np.stack(masks) if masks else np.zeros((0, size, size), bool)
    n = len(masks)
    img = np.clip(image, 0, 255).astype(np.uint8)
    return Scene(img, arr, np.arange(n), np.zeros(n, int), np.full(n, -1))


class ThinDataset:
    """Thin scenes as a dataset of (image H x W x 3 uint8, masks M x H x W bool); item i is
    ``render_thin_scene`` with the generator seeded by (seed, i); ``length`` is nominal."""

    def __init__(self, seed: int = 0, size: int = 160, length: int = 10_000_000) -> None:
        self.seed, self.size, self.length = seed, size, length

    def __len__(self) -> int:
        return self.length

    def scene(self, i: int) -> Scene:
        return render_thin_scene(np.random.default_rng([self.seed, i, 7]), self.size)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.scene(i)
        return s.image, s.masks
