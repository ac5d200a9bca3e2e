"""HQ-SAM training (HQ-SAM ``train/train.py``) as a task of the training loop: SAM stays frozen
(and bit-identical), only the five HQ modules learn.

One step: horizontal flip and large-scale jitter of each image and its masks, one prompt per mask
drawn uniformly from {box, 10 positive points, noisy mask}, a frozen SAM pass (encoder under
``no_grad``), the HQ token's logits, and the point-sampled BCE + dice loss of Mask2Former /
PointRend with uncertainty oversampling. Adam (AdamW without weight decay), lr x0.1 after 10/12
of the run, no warm-up, no gradient clipping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from samkit.errors import CheckpointError, ConfigError
from samkit.models import Sam, build_sam
from samkit.models.sam import ImageFeatures
from samkit.train.loop import TrainConfig, TrainState, run, step_generator
from samkit.train.losses import hq_loss, mask_iou
from samkit.train.prompts import label_boxes, label_points, noisy_mask

HQ_MODULES = (
    "hf_token",
    "hf_mlp",
    "compress_vit_feat",
    "embedding_encoder",
    "embedding_maskfeature",
)
PROMPT_TYPES = ("box", "point", "noise_mask")


@dataclass
class HQTrainConfig(TrainConfig):
    masks_per_image: int = 1  # HQSeg-44K has one object per image
    lr: float = 1e-3
    warmup: int = 0
    decay_at: tuple[float, ...] = (10 / 12,)  # lr x 0.1 after epoch 10 of 12
    weight_decay: float = 0.0
    grad_clip: float | None = None
    checkpoint_every_s: float = 120.0
    jitter: tuple[float, float] = (0.1, 2.0)  # large-scale jitter scale range
    num_points: int | None = None  # None: 112 * 112 scaled to the model's input size
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    n_points_prompt: int = 10
    init: str = ""  # the base weights, recorded in exports


# -- model ----------------------------------------------------------------------------------


def hq_from_sam(base: Sam) -> Sam:
    """An HQ-SAM of ``base``'s architecture holding its weights; the HQ modules keep PyTorch's
    default initialisation (as the official recipe). An HQ model is returned as it is."""
    if base.is_hq:
        return base
    if base.config is None:
        raise ConfigError(
            "this SAM has no configuration (built by hand?); build it with "
            "samkit.models.build_sam or load it with samkit.load"
        )
    model = build_sam(replace(base.config, hq=True))
    res = model.load_state_dict(base.state_dict(), strict=False)
    stray = [k for k in res.missing_keys if k.split(".")[1] not in HQ_MODULES]
    if stray or res.unexpected_keys:
        raise CheckpointError(f"base weights do not fit an HQ model: {stray + res.unexpected_keys}")
    return model.to(base.device)


def hq_parameters(model: Sam) -> dict[str, torch.nn.Parameter]:
    """The trainable HQ parameters by their state-dict names (mask_decoder.hf_token.weight, ...)."""
    return {
        n: p
        for n, p in model.named_parameters()
        if n.startswith("mask_decoder.") and n.split(".")[1] in HQ_MODULES
    }


def freeze_all_but_hq(model: Sam) -> list[torch.nn.Parameter]:
    """Freeze SAM (encoder, prompt encoder, SAM decoder); return the HQ parameters."""
    if not model.is_hq:
        raise ConfigError("HQ training needs an HQ model (use hq_from_sam on a SAM)")
    model.requires_grad_(False)
    params = list(hq_parameters(model).values())
    for p in params:
        p.requires_grad_(True)
    return params


# -- data -----------------------------------------------------------------------------------


def large_scale_jitter(
    image: np.ndarray, labels: np.ndarray, size: int, scale: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Official LargeScaleJitter: resize by ``scale`` x size (aspect kept, bilinear), random crop
    to at most size x size, pad bottom/right (image with 128, labels with 0).
    image H x W x 3 uint8, labels M x H x W float in [0, 1] -> size x size x 3, M x size x size."""
    h, w = image.shape[:2]
    f = min(round(scale * size) / h, round(scale * size) / w)
    nh, nw = max(1, int(round(h * f))), max(1, int(round(w * f)))
    img = cv2.resize(image.astype(np.float32), (nw, nh), interpolation=cv2.INTER_LINEAR)
    lab = np.stack([cv2.resize(m, (nw, nh), interpolation=cv2.INTER_LINEAR) for m in labels])
    y0 = int(rng.integers(0, nh - size + 1)) if nh > size else 0
    x0 = int(rng.integers(0, nw - size + 1)) if nw > size else 0
    img, lab = img[y0 : y0 + size, x0 : x0 + size], lab[:, y0 : y0 + size, x0 : x0 + size]
    out_img = np.full((size, size, 3), 128, np.float32)
    out_lab = np.zeros((len(lab), size, size), np.float32)
    out_img[: img.shape[0], : img.shape[1]] = img
    out_lab[:, : lab.shape[1], : lab.shape[2]] = lab
    return out_img.astype(np.uint8), out_lab  # astype truncates, as the official loader


@dataclass
class HQBatch:
    """images: B x 3 x S x S preprocessed; labels: N x S x S soft in [0, 1]; image_of: N."""

    images: torch.Tensor
    labels: torch.Tensor
    image_of: torch.Tensor

    def to(self, device: torch.device) -> HQBatch:
        return HQBatch(*(t.to(device) for t in (self.images, self.labels, self.image_of)))


def make_hq_batch(model: Sam, data: Any, cfg: HQTrainConfig, step: int) -> HQBatch:
    """Read, flip and jitter ``images_per_step`` items; keep up to ``masks_per_image`` masks
    that survive the jitter (at least 4 label pixels > 0.5)."""
    rng = np.random.default_rng([cfg.seed, step, 11])
    s = model.image_size
    n = len(data)
    per_epoch = max(n // cfg.images_per_step, 1)
    epoch, k = divmod(step, per_epoch)
    perm = np.random.default_rng([cfg.seed, epoch, 5]).permutation(n) if n < 10**6 else None
    images, labels, owner = [], [], []
    for b in range(cfg.images_per_step):
        j = (k * cfg.images_per_step + b) % n
        img, masks = data[int(perm[j]) if perm is not None else j]
        masks = [m for m in masks if m.any()]
        if not masks:
            continue
        pick = rng.permutation(len(masks))[: cfg.masks_per_image]
        lab = np.stack([masks[i] for i in pick]).astype(np.float32)
        if rng.random() >= 0.5:
            img, lab = img[:, ::-1], lab[:, :, ::-1]
        for _ in range(5):  # a tiny scale can make every mask vanish; draw again
            im_j, lab_j = large_scale_jitter(img, lab, s, rng.uniform(*cfg.jitter), rng)
            keep = [m for m in lab_j if (m > 0.5).sum() >= 4]
            if keep:
                break
        if not keep:
            continue
        owner += [len(images)] * len(keep)
        labels += keep
        images.append(torch.from_numpy(im_j).permute(2, 0, 1).float())
    if not images:
        raise ConfigError(f"step {step}: no usable masks in the batch")
    return HQBatch(
        torch.stack([model.preprocess(i.to(model.device)) for i in images]),
        torch.from_numpy(np.stack(labels)),
        torch.tensor(owner),
    )


# -- one step -------------------------------------------------------------------------------


def _iou(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """IoU of N x 1 x h x w low-res logits, upsampled, with N x H x W soft labels."""
    up = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return mask_iou(up[:, 0] > 0, labels > 0.5)


def hq_step_loss(
    model: Sam, batch: HQBatch, cfg: HQTrainConfig, step: int
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one step (not yet back-propagated) and its logged numbers (HQ and SAM IoU of
    the single-mask output on the training masks, for comparison)."""
    dev = batch.labels.device
    gen = step_generator(cfg.seed, step, dev)
    dec = model.mask_decoder
    with torch.no_grad():
        emb, interm = model.image_encoder.forward_with_interm(batch.images)
    feats = ImageFeatures(emb, dec.hq_features(emb, interm[0]))  # type: ignore[operator]
    n = len(batch.labels)
    kind = torch.randint(len(PROMPT_TYPES), (n,), generator=gen, device=dev)
    enough = (batch.labels > 0.5).flatten(1).sum(1) >= cfg.n_points_prompt
    kind = torch.where((kind == 1) & ~enough, torch.zeros_like(kind), kind)  # too small: box
    low = model.prompt_encoder.mask_input_size
    hq_logits = torch.zeros(n, 1, *low, device=dev)
    sam_logits = torch.zeros(n, 1, *low, device=dev)
    for t in range(len(PROMPT_TYPES)):
        idx = (kind == t).nonzero()[:, 0]
        if len(idx) == 0:
            continue
        lab = batch.labels[idx]
        points = boxes = masks = None
        if PROMPT_TYPES[t] == "box":
            boxes = label_boxes(lab)
        elif PROMPT_TYPES[t] == "point":
            xy = label_points(lab, cfg.n_points_prompt, gen)
            points = (xy, torch.ones(xy.shape[:2], device=dev))
        else:
            masks = noisy_mask(lab, low, gen)
        with torch.no_grad():
            sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=masks)
        owner = batch.image_of[idx]
        sam_all, _, hq = dec.predict_all(  # type: ignore[operator]
            feats.embeddings[owner],
            model.prompt_encoder.get_dense_pe(),
            sparse,
            dense,
            feats.hq_features[owner],  # type: ignore[index]
        )
        hq_logits = hq_logits.index_put((idx,), hq.float())
        sam_logits = sam_logits.index_put((idx,), sam_all[:, :1].detach().float())
    loss = hq_loss(
        hq_logits,
        batch.labels,
        gen,
        cfg.num_points,
        cfg.oversample_ratio,
        cfg.importance_sample_ratio,
    )
    logs = {
        "loss": float(loss.total.detach()),
        "bce": float(loss.bce.detach()),
        "dice": float(loss.dice.detach()),
        "iou_hq": float(_iou(hq_logits.detach(), batch.labels).mean()),
        "iou_sam": float(_iou(sam_logits, batch.labels).mean()),
    }
    return loss.total, logs


class HQTask:
    """HQ-SAM training over :func:`samkit.train.loop.run`: the model stays in eval mode (no
    dropout or norm statistics anywhere, so the frozen parts stay exact) and a checkpoint holds
    only the HQ parameters (SAM comes from ``cfg.init``)."""

    postfix = {"loss": "loss", "iou_hq": "iou_hq", "iou_sam": "iou_sam"}

    def __init__(self, cfg: HQTrainConfig) -> None:
        self.cfg = cfg

    def param_groups(self, model: Sam) -> list[dict]:
        params = freeze_all_but_hq(model)
        model.eval()
        return [{"params": params, "weight_decay": self.cfg.weight_decay}]

    def make_batch(self, model: Sam, data: Any, step: int) -> HQBatch:
        return make_hq_batch(model, data, self.cfg, step)

    def step_loss(
        self, model: Sam, batch: HQBatch, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        return hq_step_loss(model, batch, self.cfg, step)

    def weights(self, model: Sam) -> dict:
        return {"hq": {k: v.detach().clone() for k, v in hq_parameters(model).items()}}

    def load_weights(self, model: Sam, ck: dict) -> None:
        own = hq_parameters(model)
        if set(ck["hq"]) != set(own):
            raise CheckpointError("the checkpoint holds HQ parameters of another architecture")
        with torch.no_grad():
            for k, v in ck["hq"].items():
                own[k].copy_(v)

    def export_metadata(self, state: TrainState) -> dict[str, str]:
        return {
            "samkit_hq_train_steps": str(state.step),
            "samkit_hq_train_wall_s": f"{state.wall_s:.0f}",
            "samkit_hq_train_init": self.cfg.init,
            "samkit_hq_train_command": self.cfg.command,
        }


def train_hq(
    model: Sam,
    data: Any,
    cfg: HQTrainConfig,
    out_dir: str | os.PathLike,
    resume: bool = True,
    stop_after: int | None = None,
    progress: bool = True,
) -> TrainState:
    """Train the HQ modules of ``model`` in place, everything else frozen (see
    :func:`samkit.train.loop.run`)."""
    return run(model, HQTask(cfg), data, out_dir, resume, stop_after, progress)
