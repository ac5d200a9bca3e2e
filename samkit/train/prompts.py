"""Prompt simulation for training. SAM (paper, Appendix A): a first point or box, then points
sampled from the error region with the previous logits fed back, then rounds with no new point.
HQ-SAM (``train/train.py``): the tight box, positive points inside the mask, or a noisy mask.

All functions are batched over N masks in the model's input frame and draw from a
torch.Generator on the masks' device, so a training step is reproducible from its seed. Boxes are
XYXY with x1/y1 inclusive (:func:`samkit.masks.masks_to_boxes`, the official convention)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from samkit.masks import masks_to_boxes


def sample_points(region: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One uniform pixel per row of region (N x H x W bool) -> (N x 2 (x, y) pixel centres,
    N bool: False where the region is empty and the point is meaningless)."""
    n, h, w = region.shape
    flat = region.reshape(n, -1).float()
    ok = flat.sum(1) > 0
    weights = torch.where(ok[:, None], flat, torch.ones_like(flat))
    idx = torch.multinomial(weights, 1, generator=gen)[:, 0]
    xy = torch.stack([idx % w, idx // w], 1).float() + 0.5
    return xy, ok


def noisy_boxes(
    masks: torch.Tensor, gen: torch.Generator, noise: float = 0.1, cap: float = 20.0
) -> torch.Tensor:
    """Ground-truth boxes of masks (N x H x W bool) with per-coordinate Gaussian noise of std
    ``noise`` x the box's side in pixels, capped at ``cap`` px -> N x 4 XYXY (x1/y1 inclusive),
    kept inside the H x W frame."""
    n, h, w = masks.shape
    box = masks_to_boxes(masks).float()
    side = (box[:, 2:] - box[:, :2] + 1).repeat(1, 2)  # width, height, width, height
    std = (noise * side).clamp(max=cap)
    jitter = (torch.randn(box.shape, generator=gen, device=gen.device) * std).clamp(-cap, cap)
    box = box + jitter
    lim = torch.tensor([w - 1, h - 1, w - 1, h - 1], dtype=box.dtype, device=box.device)
    return torch.minimum(box.clamp(min=0), lim)


def error_points(
    pred: torch.Tensor, gt: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A point from the error region of each mask: uniform over false negatives and false
    positives together, labelled 1 (add) for a false negative and 0 (remove) for a false
    positive. pred, gt: N x H x W bool -> (N x 2 xy, N labels float). Where the prediction is
    already perfect the point is a positive one inside the object."""
    fn = gt & ~pred
    fp = pred & ~gt
    xy, ok = sample_points(fn | fp, gen)
    xi, yi = xy[:, 0].long(), xy[:, 1].long()
    rows = torch.arange(len(xy), device=xy.device)
    label = fn[rows, yi, xi].float()
    if not bool(ok.all()):
        inside, _ = sample_points(gt, gen)
        xy = torch.where(ok[:, None], xy, inside)
        label = torch.where(ok, label, torch.ones_like(label))
    return xy, label


def round_plan(n_rounds: int, gen: torch.Generator) -> list[str]:
    """What each round adds: "first", then "point" or "mask" (no new point, only the fed-back
    logits). With 11 rounds this is the paper's 1 + 8 points + 2 mask-only rounds, one of them
    at a random position and one always last; shorter schedules keep the last mask-only round
    (from 3 rounds) and the random one (from 6)."""
    plan = ["first"] + ["point"] * (n_rounds - 1)
    if n_rounds >= 3:
        plan[-1] = "mask"
    if n_rounds >= 6:
        i = 1 + int(torch.randint(n_rounds - 2, (1,), generator=gen, device=gen.device))
        plan[i] = "mask"
    return plan


# -- HQ-SAM ------------------------------------------------------------------------------------


def label_boxes(labels: torch.Tensor) -> torch.Tensor:
    """HQ-SAM's box prompt: the tight box of ``labels > 0.5`` (N x H x W soft) -> N x 4 float."""
    return masks_to_boxes(labels > 0.5).float()


def label_points(labels: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k distinct foreground pixels (x, y) per mask, uniform (official masks_sample_points);
    every mask needs at least k foreground pixels -> N x k x 2."""
    n, h, w = labels.shape
    flat = (labels > 0.5).reshape(n, -1).float()
    idx = torch.multinomial(flat, k, replacement=False, generator=gen)
    return torch.stack([idx % w, idx // w], -1).float()


def noisy_mask(labels: torch.Tensor, low: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
    """Official masks_noise: the label at the low-res mask size, N(0, 1) noise added where it
    differs from its 8x down-up-sampled copy, thresholded at 0.5 -> N x 1 x h x w in {0, 255}
    (the official prompt feeds these values, not logits)."""
    m = F.interpolate(labels[:, None], size=low, mode="bilinear", align_corners=False)
    coarse = F.interpolate(m, scale_factor=1 / 8, mode="bilinear", align_corners=False)
    coarse = F.interpolate(coarse, size=low, mode="bilinear", align_corners=False)
    region = (m - coarse).abs() >= 0.01
    noise = torch.randn(m.shape, generator=gen, device=gen.device)
    return ((m + region * noise) > 0.5).float() * 255
