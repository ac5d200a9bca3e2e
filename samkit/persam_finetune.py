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
    """The two learnable weights (2 x 1) -> the mixing weights [1 - w1 - w2, w1, w2] (3 x 1)."""
    return torch.cat((1 - weights.sum(0).unsqueeze(0), weights), dim=0)


def mixed_loss_grad(
    logits_t: torch.Tensor,
    diffs: torch.Tensor,
    target: torch.Tensor,
    sign: torch.Tensor,
    alpha: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """Gradient of dice + focal loss of the mixed logits with respect to (w1, w2), in closed
    form: one pass over the pixels, no autograd graph.

    logits_t: N x 3; diffs: 2 x N (outputs 2 and 3 minus output 1); target: N (0/1);
    sign: 1 - 2 target; alpha: focal alpha_t per pixel; weights: 2 x 1. Returns 2 x 1.
    """
    z = logits_t @ combine(weights)[:, 0]
    p = z.sigmoid()
    # Dice = 1 - (2I + 1) / D with I = sum(p y), D = sum(p) + sum(y) + 1.
    den = p.sum() + target.sum() + 1
    d_dice = (2 * (p @ target) + 1 - 2 * den * target) / den**2
    # Focal = mean(alpha_t q^2 ce), q = 1 - p_t, ce = -log p_t. d/dz = s alpha_t q^2 (q - 2 p_t
    # log p_t) with s = -1 on the object and +1 elsewhere; p_t log p_t -> 0 where p_t underflows.
    q = sign * p + target
    pt = 1 - q
    pq = pt * q  # = p (1 - p)
    g = d_dice * pq + sign * alpha / z.numel() * q * q * (q - 2 * torch.xlogy(pt, pt))
    return (diffs @ g)[:, None]


def fit_scale_weights(
    logits_high: torch.Tensor,
    target: torch.Tensor,
    steps: int = 1000,
    lr: float = 1e-3,
) -> torch.Tensor:
    """Learn PerSAM-F's weights. logits_high: 3 x H x W full-resolution logits of the
    multimask outputs on the reference; target: H x W (0/1). Returns the combined weights (3,).

    AdamW (lr, eps 1e-4, weight decay 0.01) with a cosine schedule over ``steps``, dice + focal
    loss, weights initialised to 1/3: the official recipe, with the gradient in closed form.
    """
    logits = logits_high.detach().flatten(1).float()
    gt = target.detach().flatten().float()
    diffs = logits[1:] - logits[:1]
    logits_t = logits.t().contiguous()
    sign = 1 - 2 * gt
    alpha = torch.where(gt > 0, 0.25, 0.75)
    weights = torch.nn.Parameter(torch.ones(2, 1, device=logits.device) / 3)
    if steps == 0:
        return combine(weights.detach())[:, 0]
    opt = torch.optim.AdamW([weights], lr=lr, eps=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    with torch.no_grad():
        for _ in range(steps):
            weights.grad = mixed_loss_grad(logits_t, diffs, gt, sign, alpha, weights)
            opt.step()
            sched.step()
    return combine(weights.detach())[:, 0]
