"""PerSAM-F's scale-aware fine-tuning: two learnable weights mixing SAM's three multimask outputs.

The decoder's logits do not depend on the weights, so they are computed once and only the
weighted sum, the loss and the optimiser step are repeated (the official script re-runs the
decoder and the full-resolution upscaling for each of its 1000 iterations).
"""

from __future__ import annotations

import torch

# The official PerSAM-F loss is dice (+1 smoothing) + focal (alpha 0.25, gamma 2, mean over pixels)
# of the 1 x N mixed logits, each summed over rows: samkit's one dice and focal loss with
# pixel_dims=1. fit_scale_weights follows its gradient in closed form (mixed_loss_grad); the names
# stay importable here for the tests and benchmarks that check that gradient against autograd.
from samkit.train.losses import dice_loss
from samkit.train.losses import sigmoid_focal_loss as focal_loss

__all__ = ["combine", "dice_loss", "fit_scale_weights", "focal_loss", "mixed_loss_grad"]


def combine(weights: torch.Tensor) -> torch.Tensor:
    """The two learnable weights (2 x 1) -> the mixing weights [1 - w1 - w2, w1, w2] (3 x 1)."""
    return torch.cat((1 - weights.sum(0).unsqueeze(0), weights), dim=0)


class _Pixels:
    """Per-pixel constants of the fit: logits N x 3, their differences and target terms."""

    def __init__(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        self.logits_t = logits.t().contiguous()
        self.diffs = logits[1:] - logits[:1]  # 2 x N: d z / d (w1, w2)
        self.diffs_on_target = self.diffs * target
        self.target = target
        self.ysum = float(target.sum())
        self.sign = 1 - 2 * target  # -1 on the object, +1 elsewhere
        self.focal_coef = self.sign * torch.where(target > 0, 0.25, 0.75) / target.numel()


def mixed_loss_grad(px: _Pixels, weights: torch.Tensor) -> torch.Tensor:
    """Gradient of dice + focal loss of the mixed logits with respect to (w1, w2) (2 x 1), in
    closed form: a few passes over the pixels, no autograd graph.

    With p = sigmoid(z), q = 1 - p_t and p_t log p_t -> 0 where p_t underflows:
      dice = 1 - (2 sum(p y) + 1) / D, D = sum(p) + sum(y) + 1
        d/dz = p (1 - p) ((2 sum(p y) + 1) / D^2 - 2 y / D)
      focal = mean(alpha_t q^2 ce), ce = -log p_t
        d/dz = s alpha_t q^2 (q - 2 p_t log p_t) / N, s = -1 on the object, +1 elsewhere.
    """
    p = (px.logits_t @ combine(weights)[:, 0]).sigmoid_()
    den = float(p.sum()) + px.ysum + 1
    c1 = (2 * float(p @ px.target) + 1) / den**2
    q = torch.addcmul(px.target, p, px.sign)
    pt = 1 - q
    pq = pt * q  # p (1 - p)
    focal = torch.add(q, torch.xlogy(pt, pt), alpha=-2).mul_(q).mul_(q).mul_(px.focal_coef)
    grad = c1 * (px.diffs @ pq) - 2 / den * (px.diffs_on_target @ pq) + px.diffs @ focal
    return grad[:, None]


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
    px = _Pixels(logits, gt)
    weights = torch.nn.Parameter(torch.ones(2, 1, device=logits.device) / 3)
    if steps == 0:
        return combine(weights.detach())[:, 0]
    opt = torch.optim.AdamW([weights], lr=lr, eps=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    threads = torch.get_num_threads()
    # Each pass is short: on shared or busy CPUs, thread synchronisation costs more than it saves.
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for _ in range(steps):
                weights.grad = mixed_loss_grad(px, weights)
                opt.step()
                sched.step()
    finally:
        torch.set_num_threads(threads)
    return combine(weights.detach())[:, 0]
