"""PerSAM's location prior: reference-mask pooling, target features, the similarity map, prompt
points and the target-guidance map for the decoder's attention.

Pure tensor functions. The default (``faithful=True``) paths reproduce the official
Personalize-SAM scripts, quirks included; see docs/persam.md for each quirk and its fix.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from samkit.errors import PromptError
from samkit.models.sam import Sam
from samkit.transforms import resize_image


def reference_cells(
    model: Sam, mask_rgb: np.ndarray, grid: tuple[int, int], faithful: bool = True
) -> torch.Tensor:
    """Which feature cells of the reference lie on the object: bool gh x gw.

    mask_rgb: H x W x 3 uint8. Faithful: the mask goes through the image pipeline (PIL resize,
    pixel normalisation, zero padding), is bilinearly sampled to the grid and the R channel is
    kept where > 0, so with the PerSeg value 128 a cell needs ~97 % cover. Otherwise the binary
    mask's area cover of each cell must exceed 1/2 (at least the best-covered cells are kept).
    """
    s = model.image_size
    if faithful:
        r = resize_image(mask_rgb, s)
        t = torch.as_tensor(r, device=model.device).permute(2, 0, 1)[None]
        norm = model.preprocess(t)
        cells = F.interpolate(norm, size=grid, mode="bilinear")[0, 0] > 0
        if not cells.any():
            raise PromptError(
                "no feature cell of the reference mask survives the official pooling (the mask "
                "is smaller than about one 16x16 patch, or has no red component): the official "
                "code would produce NaN. Use PerSAM(model, faithful=False) or a larger mask"
            )
        return cells
    binary = (mask_rgb.any(axis=2).astype(np.uint8)) * 255
    r = resize_image(np.repeat(binary[..., None], 3, axis=2), s)[..., 0]
    t = torch.as_tensor(r, device=model.device, dtype=torch.float32)[None, None] / 255.0
    t = F.pad(t, (0, s - t.shape[-1], 0, s - t.shape[-2]))
    cover = F.adaptive_avg_pool2d(t, grid)[0, 0]
    cells = cover > 0.5
    if not cells.any():
        cells = cover >= cover.max()
    return cells


def target_features(
    embeddings: torch.Tensor, cells: torch.Tensor, mean_max: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """embeddings: 1 x C x gh x gw; cells: gh x gw bool.

    Returns (target_embedding 1 x 1 x C, unnormalised; target_feat 1 x C, L2-normalised).
    PerSAM uses the mean of the selected features; PerSAM-F (mean_max) uses (max + mean) / 2.
    """
    feats = embeddings[0].permute(1, 2, 0)[cells]
    mean = feats.mean(0)
    if mean_max:
        target = (torch.max(feats, dim=0)[0] / 2 + mean / 2).unsqueeze(0)
    else:
        target = mean.unsqueeze(0)
    return target.unsqueeze(0), target / target.norm(dim=-1, keepdim=True)


def similarity_map(
    model: Sam,
    embeddings: torch.Tensor,
    target_feat: torch.Tensor,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
) -> torch.Tensor:
    """Cosine similarity of each location with the target, H x W at the original resolution
    (grid -> x4 -> image_size -> crop -> H x W, all bilinear, as the official code)."""
    feat = embeddings[0]
    c, h, w = feat.shape
    feat = feat / feat.norm(dim=0, keepdim=True)
    sim = (target_feat @ feat.reshape(c, h * w)).reshape(1, 1, h, w)
    sim = F.interpolate(sim, scale_factor=4, mode="bilinear")
    return model.postprocess_masks(sim, input_size, original_size)[0, 0]


def select_points(sim: torch.Tensor, negative: bool) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 positive (and bottom-1 negative) location of an H x W map.

    Returns points P x 2 (x, y) int64 original pixels, positive first, and labels P.
    Ties go to the first index in row-major order (torch CPU ``topk``)."""
    w = sim.shape[1]
    flat = sim.flatten()
    idx = [int(flat.topk(1)[1][0])]
    if negative:
        idx.append(int(flat.topk(1, largest=False)[1][0]))
    pts = np.array([[i - (i // w) * w, i // w] for i in idx], dtype=np.int64)
    labels = np.array([1, 0][: len(idx)], dtype=np.int64)
    return pts, labels


def attention_prior(
    sim: torch.Tensor,
    grid: tuple[int, int],
    input_size: tuple[int, int],
    image_size: int,
    faithful: bool = True,
) -> torch.Tensor:
    """Target-guidance map for the decoder: 1 x 1 x 1 x (gh*gw), values in (0, 1).

    The similarity map is standardised (unbiased std) and squashed with a sigmoid. Faithful: the
    H x W map is resampled to the whole grid, so on non-square images it is stretched over the
    padding. Otherwise it is resampled onto the grid cells that cover the image, and padding
    cells get the lowest value of the map.
    """
    z = (sim - sim.mean()) / torch.std(sim)
    z = z[None, None]
    if faithful:
        g = F.interpolate(z, size=grid, mode="bilinear")
    else:
        gh, gw = grid
        vh = min(gh, -(-input_size[0] * gh // image_size))
        vw = min(gw, -(-input_size[1] * gw // image_size))
        valid = F.interpolate(z, size=(vh, vw), mode="bilinear")
        g = torch.full((1, 1, gh, gw), float(z.min()), dtype=z.dtype, device=z.device)
        g[..., :vh, :vw] = valid
    return g.sigmoid().unsqueeze(0).flatten(3)


def mask_cover(
    mask: torch.Tensor, grid: tuple[int, int], input_size: tuple[int, int], image_size: int
) -> torch.Tensor:
    """How much of each feature cell a binary mask covers: float gh x gw in [0, 1].

    mask: H x W (bool or 0/1) at the original resolution; it is resized to the model's input
    frame (bilinear), zero-padded like the image and area-pooled onto the grid."""
    h, w = input_size
    m = F.interpolate(mask.float()[None, None], size=(h, w), mode="bilinear")
    m = F.pad(m, (0, image_size - w, 0, image_size - h))
    return F.adaptive_avg_pool2d(m, grid)[0, 0]


def pooled_similarity(
    embeddings: torch.Tensor, weights: torch.Tensor, target_feat: torch.Tensor
) -> float:
    """Cosine similarity of the target with the ``weights``-weighted mean feature of a region.

    embeddings: 1 x C x gh x gw; weights: gh x gw (a cover from ``mask_cover``); target_feat:
    1 x C. NaN when the weights are all zero (no region)."""
    total = weights.sum()
    if float(total) <= 0:
        return float("nan")
    feat = (embeddings[0] * weights).sum((1, 2)) / total
    return float(F.cosine_similarity(feat[None], target_feat, dim=1)[0])
