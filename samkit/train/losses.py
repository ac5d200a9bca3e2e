"""Every training loss in samkit.

SAM: focal + dice (20:1) on the best of the multimask outputs, and MSE between the IoU head's
prediction and the IoU each predicted mask actually reaches. HQ-SAM: BCE + dice on PointRend point
samples with uncertainty oversampling (Mask2Former's ``loss_masks``). PerSAM-F's dice + focal loss
is the same :func:`dice_loss` and :func:`sigmoid_focal_loss` over one row of pixels.

Losses compute in float32 whatever precision the model ran in (``logits.float()`` is free when
they already are)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

FOCAL_WEIGHT = 20.0
DICE_WEIGHT = 1.0
IOU_WEIGHT = 1.0
OFFICIAL_NUM_POINTS = 112 * 112  # HQ-SAM's point samples for 1024 x 1024 labels
MIN_NUM_POINTS = 1024


def sigmoid_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    pixel_dims: int = 2,
) -> torch.Tensor:
    """Focal loss averaged over the last ``pixel_dims`` dimensions (... x H x W, or ... x P with
    pixel_dims=1) of logits and targets in [0, 1] -> ...

    The DETR / SAM 2 / PerSAM-F defaults alpha 0.25, gamma 2 (the SAM paper does not state them);
    alpha < 0 turns the class weighting off."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.flatten(-pixel_dims).mean(-1)


def dice_loss(
    logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0, pixel_dims: int = 2
) -> torch.Tensor:
    """1 - soft Dice with ``eps`` smoothing over the last ``pixel_dims`` dimensions (... x H x W,
    or ... x P with pixel_dims=1) of logits and targets in [0, 1] -> ..."""
    p = torch.sigmoid(logits).flatten(-pixel_dims)
    t = targets.flatten(-pixel_dims)
    return 1 - (2 * (p * t).sum(-1) + eps) / (p.sum(-1) + t.sum(-1) + eps)


def mask_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of boolean masks ... x H x W -> ... (1.0 where both are empty)."""
    inter = (pred & target).flatten(-2).sum(-1).float()
    union = (pred | target).flatten(-2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


# -- SAM ---------------------------------------------------------------------------------------


@dataclass
class SamLoss:
    """Loss terms of one decoding round; ``total`` is what gets back-propagated.

    best: N index of the lowest-loss output; iou: N true IoU of that output (no gradient);
    chosen_iou: N true IoU of the output the model ranks highest (set by the SAM task)."""

    total: torch.Tensor
    focal: torch.Tensor
    dice: torch.Tensor
    iou_mse: torch.Tensor
    best: torch.Tensor
    iou: torch.Tensor
    chosen_iou: torch.Tensor | None = None


def sam_loss(logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor) -> SamLoss:
    """logits N x K x h x w, iou_pred N x K, target N x h x w in [0, 1] (soft at the edges
    when downsampled). The mask loss is taken only from the lowest-loss of the K outputs; the
    IoU head learns the true IoU of every output."""
    logits, iou_pred = logits.float(), iou_pred.float()
    t = target[:, None].expand_as(logits)
    focal = sigmoid_focal_loss(logits, t)
    dice = dice_loss(logits, t)
    per_mask = FOCAL_WEIGHT * focal + DICE_WEIGHT * dice  # N x K
    best = per_mask.argmin(1)
    rows = torch.arange(len(best), device=best.device)
    with torch.no_grad():
        true_iou = mask_iou(logits > 0, t > 0.5)
    iou_mse = F.mse_loss(iou_pred, true_iou)
    total = per_mask[rows, best].mean() + IOU_WEIGHT * iou_mse
    return SamLoss(
        total,
        focal[rows, best].mean(),
        dice[rows, best].mean(),
        iou_mse,
        best,
        true_iou[rows, best],
    )


# -- HQ-SAM ------------------------------------------------------------------------------------


@dataclass
class HQLoss:
    """HQ-SAM's mask loss: total = bce + dice, each summed over masks and divided by N."""

    total: torch.Tensor
    bce: torch.Tensor
    dice: torch.Tensor


def point_sample(x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of N x 1 x H x W maps at N x P x 2 (x, y) in [0, 1] -> N x P."""
    return F.grid_sample(x, 2 * coords[:, :, None] - 1, align_corners=False)[:, 0, :, 0]


def uncertain_points(
    logits: torch.Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
    gen: torch.Generator,
) -> torch.Tensor:
    """PointRend training points: of num_points x oversample uniform candidates keep the
    importance_ratio x num_points with the smallest |logit|, fill up with uniform ones.
    logits N x 1 x h x w -> N x num_points x 2 in [0, 1] (on ``gen``'s device)."""
    n = logits.shape[0]
    cand = torch.rand(n, int(num_points * oversample_ratio), 2, generator=gen, device=gen.device)
    uncertainty = -point_sample(logits, cand).abs()
    n_imp = int(importance_sample_ratio * num_points)
    idx = uncertainty.topk(n_imp, dim=1).indices
    important = cand.gather(1, idx[..., None].expand(-1, -1, 2))
    rest = torch.rand(n, num_points - n_imp, 2, generator=gen, device=gen.device)
    return torch.cat([important, rest], 1)


def scaled_num_points(label_side: int) -> int:
    """112 x 112 points for 1024 px labels, scaled by label area, at least MIN_NUM_POINTS."""
    scaled = round(OFFICIAL_NUM_POINTS * (label_side / 1024) ** 2)
    return int(min(OFFICIAL_NUM_POINTS, max(MIN_NUM_POINTS, scaled)))


def hq_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    gen: torch.Generator,
    num_points: int | None = None,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
) -> HQLoss:
    """HQ-SAM's ``loss_masks``: BCE + dice on point samples. logits N x 1 x h x w (low res),
    labels N x H x W soft in [0, 1] (input frame); num_points None scales the official 112 x 112
    to the label size (:func:`scaled_num_points`)."""
    logits = logits.float()
    n = logits.shape[0]
    num_points = num_points or scaled_num_points(labels.shape[-1])
    with torch.no_grad():
        coords = uncertain_points(
            logits, num_points, oversample_ratio, importance_sample_ratio, gen
        )
        target = point_sample(labels[:, None], coords)
    pts = point_sample(logits, coords)
    bce = F.binary_cross_entropy_with_logits(pts, target, reduction="none").mean(1).sum() / n
    dice = dice_loss(pts, target, pixel_dims=1).sum() / n
    return HQLoss(bce + dice, bce, dice)
