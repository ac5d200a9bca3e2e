"""PerSAM-F's scale-aware fine-tuning: two learnable weights mixing SAM's three multimask outputs.

The decoder's logits do not depend on the weights, so they are computed once and only the
weighted sum, the loss and the optimiser step are repeated (the official script re-runs the
decoder and the full-resolution upscaling for each of its 1000 iterations).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 x N logits and 0/1 targets -> scalar dice loss with +1 smoothing (official)."""
    p = logits.sigmoid()
    num = 2 * (p * target).sum(-1)
    den = p.sum(-1) + target.sum(-1)
    return (1 - (num + 1) / (den + 1)).sum()


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """1 x N logits and 0/1 targets -> scalar sigmoid focal loss, mean over pixels (official)."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * ((1 - p_t) ** gamma)
    loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.mean(1).sum()


def combine(weights: torch.Tensor) -> torch.Tensor:
    """The two learnable weights (2 x 1) -> the three mixing weights [1 - w1 - w2, w1, w2] (3 x 1)."""
    return torch.cat((1 - weights.sum(0).unsqueeze(0), weights), dim=0)


def fit_scale_weights(
    logits_high: torch.Tensor,
    target: torch.Tensor,
    steps: int = 1000,
    lr: float = 1e-3,
) -> torch.Tensor:
    """Learn PerSAM-F's weights. logits_high: 3 x H x W full-resolution logits of the
    multimask outputs on the reference; target: H x W (0/1). Returns the combined weights (3,).

    AdamW (lr, eps 1e-4, weight decay 0.01) with a cosine schedule over ``steps``, dice + focal
    loss, weights initialised to 1/3: the official recipe.
    """
    logits = logits_high.detach().flatten(1).float()
    gt = target.detach().flatten().float()[None]
    weights = torch.nn.Parameter(torch.ones(2, 1, device=logits.device) / 3)
    opt = torch.optim.AdamW([weights], lr=lr, eps=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    with torch.enable_grad():
        for _ in range(steps):
            z = (logits * combine(weights)).sum(0).unsqueeze(0)
            loss = dice_loss(z, gt) + focal_loss(z, gt)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return combine(weights.detach())[:, 0]
