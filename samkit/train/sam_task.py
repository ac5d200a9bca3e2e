"""SAM's training recipe (paper, Appendix A) as a task of the training loop: one encoder pass per
batch, several masks per image, and all interactive rounds of a mask sharing that pass; focal +
dice (20:1) on the best output and MSE on the IoU head; AdamW with weight decay on matrices."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from samkit.errors import ConfigError
from samkit.models import Sam
from samkit.models.sam import ImageFeatures
from samkit.train.loop import TrainConfig, TrainState, decay_groups, run, step_generator
from samkit.train.losses import SamLoss, mask_iou, sam_loss
from samkit.train.prompts import error_points, noisy_boxes, round_plan, sample_points
from samkit.transforms import resize_image

MODULES = ("image_encoder", "prompt_encoder", "mask_decoder")


class MaskDataset(Protocol):
    """What SAM training reads: item i is (H x W x 3 uint8 image, M x H x W bool masks)."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class SamTrainConfig(TrainConfig):
    rounds: int = 11  # the paper's 1 + 8 + 2; fewer is cheaper on a CPU
    freeze: tuple[str, ...] = ()  # top-level modules: image_encoder, prompt_encoder, mask_decoder
    max_mask_fraction: float = 0.9  # the paper drops masks covering more than 90% of the image


@dataclass
class SamBatch:
    """images: B x 3 x S x S preprocessed; gt: N x S x S bool (input frame, padded);
    valid: N x S x S bool (the unpadded image area); image_of: N long, the image of each mask."""

    images: torch.Tensor
    gt: torch.Tensor
    valid: torch.Tensor
    image_of: torch.Tensor

    def to(self, device: torch.device) -> SamBatch:
        return SamBatch(*(t.to(device) for t in (self.images, self.gt, self.valid, self.image_of)))


def make_batch(model: Sam, data: MaskDataset, cfg: SamTrainConfig, step: int) -> SamBatch:
    """Read ``images_per_step`` items (a seeded shuffle of the dataset), resize them to the
    model's input frame and pick ``masks_per_image`` usable masks from each."""
    gen = step_generator(cfg.seed, step)
    s = model.image_size
    n = len(data)
    per_epoch = max(n // cfg.images_per_step, 1)
    epoch, k = divmod(step, per_epoch)
    # generated datasets are already in random order (and too long to permute)
    perm = torch.randperm(n, generator=step_generator(cfg.seed + 7, epoch)) if n < 10**6 else None
    images, gts, valids, owner = [], [], [], []
    for b in range(cfg.images_per_step):
        j = (k * cfg.images_per_step + b) % n
        idx = int(perm[j]) if perm is not None else j
        img, masks = data[idx]
        img_r = resize_image(img, s)
        h, w = img_r.shape[:2]
        keep = [m for m in masks if 0 < m.mean() <= cfg.max_mask_fraction]
        if not keep:
            continue
        choice = (
            torch.randperm(len(keep), generator=gen)[: cfg.masks_per_image]
            if len(keep) >= cfg.masks_per_image
            else torch.randint(len(keep), (cfg.masks_per_image,), generator=gen)
        )
        for c in choice.tolist():
            m = keep[c]
            if m.shape != (h, w):
                m = cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
            full = np.zeros((s, s), bool)
            full[:h, :w] = m
            gts.append(full)
            v = np.zeros((s, s), bool)
            v[:h, :w] = True
            valids.append(v)
            owner.append(len(images))
        images.append(torch.from_numpy(img_r).permute(2, 0, 1).float())
    if not images:
        raise ConfigError(
            f"step {step}: no usable masks in the batch (all empty or covering more than "
            f"max_mask_fraction={cfg.max_mask_fraction} of the image)"
        )
    x = torch.stack([model.preprocess(i.to(model.device)) for i in images])
    return SamBatch(
        x,
        torch.from_numpy(np.stack(gts)),
        torch.from_numpy(np.stack(valids)),
        torch.tensor(owner),
    )


def simulate_interaction(
    model: Sam,
    features: ImageFeatures,
    gt: torch.Tensor,
    valid: torch.Tensor,
    first: str,
    plan: list[str],
    gen: torch.Generator,
) -> list[SamLoss]:
    """Run the interactive rounds for N masks sharing ``features`` (batch N) and return one
    loss per round. first: "point" or "box" prompt in round 0."""
    n, s, _ = gt.shape
    dev = gt.device
    low = model.prompt_encoder.mask_input_size
    target = F.interpolate(gt[:, None].float(), size=low, mode="area")[:, 0]
    if first == "box":
        boxes = noisy_boxes(gt, gen)
        coords = torch.zeros(n, 0, 2, device=dev)
        labels = torch.zeros(n, 0, device=dev)
    else:
        boxes = None
        coords, _ = sample_points(gt, gen)
        coords = coords[:, None]
        labels = torch.ones(n, 1, device=dev)
    mask_in = None
    losses = []
    for r, kind in enumerate(plan):
        # Only a lone point is ambiguous: it gets the three outputs, every other prompt (a box,
        # several points) the single-mask token, as SAM is used at inference.
        ambiguous = r == 0 and first == "point"
        if kind == "point":
            pred = F.interpolate(mask_in, size=(s, s), mode="bilinear", align_corners=False)
            pred = (pred[:, 0] > 0) & valid
            xy, lab = error_points(pred, gt, gen)
            coords = torch.cat([coords, xy[:, None]], 1)
            labels = torch.cat([labels, lab[:, None]], 1)
        pts = (coords, labels) if coords.shape[1] else None
        logits, iou = model.decode(
            features, points=pts, boxes=boxes, mask_input=mask_in, multimask_output=ambiguous
        )
        loss = sam_loss(logits, iou, target)
        losses.append(loss)
        choose = iou.argmax(1)
        mask_in = logits[torch.arange(n, device=dev), choose][:, None].detach()
        loss.chosen_iou = mask_iou(mask_in[:, 0] > 0, target > 0.5)
    return losses


def sam_step_loss(
    model: Sam, batch: SamBatch, cfg: SamTrainConfig, step: int
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one step (not yet back-propagated) and its logged numbers: half the masks start
    from a point, half from a box; the loss is the mean over masks and rounds."""
    gen = step_generator(cfg.seed, step, batch.gt.device)
    plan = round_plan(cfg.rounds, gen)
    frozen_encoder = "image_encoder" in cfg.freeze
    with torch.set_grad_enabled(not frozen_encoder and torch.is_grad_enabled()):
        feats = model.encode(batch.images)
    n = len(batch.gt)
    use_box = torch.rand(n, generator=gen, device=gen.device) < 0.5
    all_losses: list[SamLoss] = []
    first_iou, last_iou, total = [], [], torch.zeros((), device=batch.gt.device)
    for first, sel in (("point", ~use_box), ("box", use_box)):
        idx = sel.nonzero()[:, 0]
        if len(idx) == 0:
            continue
        owner = batch.image_of[idx]
        hq = None if feats.hq_features is None else feats.hq_features[owner]
        f = ImageFeatures(feats.embeddings[owner], hq)
        losses = simulate_interaction(model, f, batch.gt[idx], batch.valid[idx], first, plan, gen)
        total = total + sum(x.total for x in losses) * len(idx) / (n * len(losses))
        all_losses += losses
        first_iou.append(losses[0].chosen_iou)
        last_iou.append(losses[-1].chosen_iou)
    logs = {
        "loss": float(total.detach()),
        "focal": float(np.mean([x.focal.item() for x in all_losses])),
        "dice": float(np.mean([x.dice.item() for x in all_losses])),
        "iou_mse": float(np.mean([x.iou_mse.item() for x in all_losses])),
        "miou_first": float(torch.cat(first_iou).mean()),
        "miou_last": float(torch.cat(last_iou).mean()),
    }
    return total, logs


class SamTask:
    """SAM training over :func:`samkit.train.loop.run`: the whole model learns (but for
    ``cfg.freeze``) and a checkpoint holds the full state dict and the architecture."""

    postfix = {"loss": "loss", "miou1": "miou_first", "miou": "miou_last"}

    def __init__(self, cfg: SamTrainConfig) -> None:
        self.cfg = cfg

    def param_groups(self, model: Sam) -> list[dict]:
        for name in self.cfg.freeze:
            if name not in MODULES:
                raise ConfigError(f"cannot freeze '{name}': choose from {', '.join(MODULES)}")
            getattr(model, name).requires_grad_(False)
        model.train()
        for name in self.cfg.freeze:
            # Frozen means frozen: BatchNorm (TinyViT) keeps its running statistics and
            # normalises with them, as at inference.
            getattr(model, name).eval()
        params = [p for p in model.parameters() if p.requires_grad]
        return decay_groups(params, self.cfg.weight_decay)

    def make_batch(self, model: Sam, data: MaskDataset, step: int) -> SamBatch:
        return make_batch(model, data, self.cfg, step)

    def step_loss(
        self, model: Sam, batch: SamBatch, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        return sam_step_loss(model, batch, self.cfg, step)

    def weights(self, model: Sam) -> dict:
        return {"model": model.state_dict(), "model_config": model.config.to_dict()}  # type: ignore[union-attr]

    def load_weights(self, model: Sam, ck: dict) -> None:
        model.load_state_dict(ck["model"])

    def export_metadata(self, state: TrainState) -> dict[str, str]:
        return {
            "samkit_train_steps": str(state.step),
            "samkit_train_wall_s": f"{state.wall_s:.0f}",
            "samkit_train_command": self.cfg.command,
        }


def train(
    model: Sam,
    data: MaskDataset,
    cfg: SamTrainConfig,
    out_dir: str | os.PathLike,
    resume: bool = True,
    stop_after: int | None = None,
    progress: bool = True,
) -> TrainState:
    """Train SAM in place with the SAM recipe (see :func:`samkit.train.loop.run`)."""
    return run(model, SamTask(cfg), data, out_dir, resume, stop_after, progress)
