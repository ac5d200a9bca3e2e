"""SAM's training losses: focal + dice (20:1) on the best of the multimask outputs, and MSE
between the IoU head's prediction and the IoU each predicted mask actually reaches."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

FOCAL_WEIGHT = 20.0
DICE_WEIGHT = 1.0
IOU_WEIGHT = 1.0


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Focal loss averaged over pixels: ... x H x W logits and targets in [0, 1] -> ...

    The DETR / SAM 2 defaults alpha 0.25, gamma 2 (the SAM paper does not state them)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice: ... x H x W logits and targets in [0, 1] -> ..."""
    p = torch.sigmoid(logits).flatten(-2)
    t = targets.flatten(-2)
    return 1 - (2 * (p * t).sum(-1) + eps) / (p.sum(-1) + t.sum(-1) + eps)


def mask_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of boolean masks ... x H x W -> ... (1.0 where both are empty)."""
    inter = (pred & target).flatten(-2).sum(-1).float()
    union = (pred | target).flatten(-2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


@dataclass
class SamLoss:
    """Loss terms of one decoding round; ``total`` is what gets back-propagated.

    best: N index of the lowest-loss output; iou: N true IoU of that output (no gradient);
    chosen_iou: N true IoU of the output the model ranks highest (set by the trainer)."""

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
    t = target[:, None].expand_as(logits)
    focal = sigmoid_focal_loss(logits, t)
    dice = dice_loss(logits, t)
    per_mask = FOCAL_WEIGHT * focal + DICE_WEIGHT * dice  # N x K
    best = per_mask.argmin(1)
    rows = torch.arange(len(best))
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
