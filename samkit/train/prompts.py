"""Interactive prompt simulation (SAM paper, Appendix A): a first point or box, then points
sampled from the error region with the previous logits fed back, then rounds with no new point.

All functions are batched over N masks in the model's input frame and take a torch.Generator, so a
training step is reproducible from its seed."""

from __future__ import annotations

import torch


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
    ``noise`` x side length, capped at ``cap`` px -> N x 4 XYXY in pixels."""
    n, h, w = masks.shape
    ys = masks.any(2)
    xs = masks.any(1)
    ar_y = torch.arange(h).expand(n, h)
    ar_x = torch.arange(w).expand(n, w)
    y0 = torch.where(ys, ar_y, h).min(1).values
    y1 = torch.where(ys, ar_y, -1).max(1).values + 1
    x0 = torch.where(xs, ar_x, w).min(1).values
    x1 = torch.where(xs, ar_x, -1).max(1).values + 1
    box = torch.stack([x0, y0, x1, y1], 1).float()
    side = torch.stack([x1 - x0, y1 - y0, x1 - x0, y1 - y0], 1).float()
    std = (noise * side).clamp(max=cap)
    jitter = (torch.randn(box.shape, generator=gen) * std).clamp(-cap, cap)
    box = box + jitter
    lim = torch.tensor([w, h, w, h], dtype=torch.float32)
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
    rows = torch.arange(len(xy))
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
        i = 1 + int(torch.randint(n_rounds - 2, (1,), generator=gen))
        plan[i] = "mask"
    return plan
