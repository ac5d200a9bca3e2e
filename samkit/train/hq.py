"""HQ-SAM training (HQ-SAM ``train/train.py``): SAM stays frozen, only the five HQ modules learn.

One step: horizontal flip and large-scale jitter of each image and its masks, one prompt per mask
drawn uniformly from {box, 10 positive points, noisy mask}, a frozen SAM pass (encoder under
``no_grad``), the HQ token's logits, and the point-sampled BCE + dice loss of Mask2Former /
PointRend with uncertainty oversampling. Adam, lr x0.1 after 10/12 of the run.

Every random choice of step s comes from generators seeded with (seed, s), so a run resumed from
its checkpoint takes exactly the steps an uninterrupted run would.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from samkit.errors import CheckpointError, ConfigError
from samkit.models import Sam, build_sam
from samkit.models.sam import ImageFeatures
from samkit.train.trainer import log_progress

HQ_MODULES = (
    "hf_token",
    "hf_mlp",
    "compress_vit_feat",
    "embedding_encoder",
    "embedding_maskfeature",
)
PROMPT_TYPES = ("box", "point", "noise_mask")
OFFICIAL_NUM_POINTS = 112 * 112  # for 1024 x 1024 labels
MIN_NUM_POINTS = 1024


@dataclass
class HQTrainConfig:
    steps: int = 2000
    images_per_step: int = 4
    masks_per_image: int = 1  # HQSeg-44K has one object per image
    lr: float = 1e-3
    decay_at: float = 10 / 12  # fraction of the run after which lr x 0.1 (epoch 10 of 12)
    jitter: tuple[float, float] = (0.1, 2.0)  # large-scale jitter scale range
    num_points: int | None = None  # None: 112 * 112 scaled to the model's input size
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    n_points_prompt: int = 10
    seed: int = 0
    checkpoint_every_s: float = 120.0
    log_every: int = 25
    threads: int = 1
    time_budget_s: float | None = None  # train for this wall time; ``steps`` then only caps
    export: str | None = None  # also write the full HQ model (safetensors) at each checkpoint
    init: str = ""  # the base weights, recorded so a resumed run can check it has the same
    command: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["jitter"] = list(self.jitter)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> HQTrainConfig:
        return cls(**{**d, "jitter": tuple(d["jitter"])})


@dataclass
class HQTrainState:
    step: int = 0
    wall_s: float = 0.0
    history: list[dict] = field(default_factory=list)
    decay_step: int | None = None


# -- model ----------------------------------------------------------------------------------


def hq_from_sam(base: Sam) -> Sam:
    """An HQ-SAM of ``base``'s architecture holding its weights; the HQ modules keep PyTorch's
    default initialisation (as the official recipe). An HQ model is returned as it is."""
    if base.is_hq:
        return base
    model = build_sam(replace(base.config, hq=True))  # type: ignore[attr-defined]
    res = model.load_state_dict(base.state_dict(), strict=False)
    stray = [k for k in res.missing_keys if k.split(".")[1] not in HQ_MODULES]
    if stray or res.unexpected_keys:
        raise CheckpointError(f"base weights do not fit an HQ model: {stray + res.unexpected_keys}")
    return model


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


def make_hq_batch(model: Sam, data, cfg: HQTrainConfig, step: int) -> HQBatch:  # type: ignore[no-untyped-def]
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
        torch.stack([model.preprocess(i) for i in images]),
        torch.from_numpy(np.stack(labels)),
        torch.tensor(owner),
    )


# -- prompts --------------------------------------------------------------------------------


def label_boxes(labels: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes of ``labels > 0.5`` (N x H x W); x1, y1 are pixel indices (official
    ``masks_to_boxes``, no +1) -> N x 4 float."""
    m = labels > 0.5
    n, h, w = m.shape
    ys, xs = m.any(2), m.any(1)
    ar_y, ar_x = torch.arange(h).expand(n, h), torch.arange(w).expand(n, w)
    y0 = torch.where(ys, ar_y, h).min(1).values
    y1 = torch.where(ys, ar_y, -1).max(1).values
    x0 = torch.where(xs, ar_x, w).min(1).values
    x1 = torch.where(xs, ar_x, -1).max(1).values
    return torch.stack([x0, y0, x1, y1], 1).float()


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
    noise = torch.randn(m.shape, generator=gen)
    return ((m + region * noise) > 0.5).float() * 255


# -- loss -----------------------------------------------------------------------------------


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
    logits N x 1 x h x w -> N x num_points x 2 in [0, 1]."""
    n = logits.shape[0]
    cand = torch.rand(n, int(num_points * oversample_ratio), 2, generator=gen)
    uncertainty = -point_sample(logits, cand).abs()
    n_imp = int(importance_sample_ratio * num_points)
    idx = uncertainty.topk(n_imp, dim=1).indices
    important = cand.gather(1, idx[..., None].expand(-1, -1, 2))
    rest = torch.rand(n, num_points - n_imp, 2, generator=gen)
    return torch.cat([important, rest], 1)


def hq_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    cfg: HQTrainConfig,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Official loss_masks: BCE + dice on point samples. logits N x 1 x h x w (low res),
    labels N x H x W soft in [0, 1] (input frame) -> (total, bce, dice), each summed over masks
    and divided by N."""
    n = logits.shape[0]
    num_points = cfg.num_points or scaled_num_points(labels.shape[-1])
    with torch.no_grad():
        coords = uncertain_points(
            logits, num_points, cfg.oversample_ratio, cfg.importance_sample_ratio, gen
        )
        target = point_sample(labels[:, None], coords)
    pts = point_sample(logits, coords)
    bce = F.binary_cross_entropy_with_logits(pts, target, reduction="none").mean(1).sum() / n
    p = pts.sigmoid()
    dice = (1 - (2 * (p * target).sum(1) + 1) / (p.sum(1) + target.sum(1) + 1)).sum() / n
    return bce + dice, bce, dice


def scaled_num_points(label_side: int) -> int:
    """112 x 112 points for 1024 px labels, scaled by label area, at least MIN_NUM_POINTS."""
    scaled = round(OFFICIAL_NUM_POINTS * (label_side / 1024) ** 2)
    return int(min(OFFICIAL_NUM_POINTS, max(MIN_NUM_POINTS, scaled)))


# -- one step -------------------------------------------------------------------------------


def _iou(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    up = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    pred, gt = up[:, 0] > 0, labels > 0.5
    inter = (pred & gt).flatten(1).sum(1).float()
    union = (pred | gt).flatten(1).sum(1).float().clamp(min=1)
    return inter / union


def hq_train_step(
    model: Sam, batch: HQBatch, cfg: HQTrainConfig, step: int
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one step (not yet back-propagated) and its logged numbers (HQ and SAM IoU of
    the single-mask output on the training masks, for comparison)."""
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    dec = model.mask_decoder
    with torch.no_grad():
        emb, interm = model.image_encoder.forward_with_interm(batch.images)
    feats = ImageFeatures(emb, dec.hq_features(emb, interm[0]))  # type: ignore[operator]
    n = len(batch.labels)
    kind = torch.randint(len(PROMPT_TYPES), (n,), generator=gen)
    enough = (batch.labels > 0.5).flatten(1).sum(1) >= cfg.n_points_prompt
    kind = torch.where((kind == 1) & ~enough, torch.zeros_like(kind), kind)  # too small: box
    low = model.prompt_encoder.mask_input_size
    hq_logits = torch.zeros(n, 1, *low)
    sam_logits = torch.zeros(n, 1, *low)
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
            points = (xy, torch.ones(xy.shape[:2]))
        else:
            masks = noisy_mask(lab, low, gen)
        with torch.no_grad():
            sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=masks)
        f = _gather(feats, batch.image_of[idx])
        sam_all, _, hq = dec.predict_all(  # type: ignore[operator]
            f.embeddings, model.prompt_encoder.get_dense_pe(), sparse, dense, f.hq_features
        )
        hq_logits = hq_logits.index_put((idx,), hq)
        sam_logits = sam_logits.index_put((idx,), sam_all[:, :1].detach())
    total, bce, dice = hq_loss(hq_logits, batch.labels, cfg, gen)
    logs = {
        "loss": float(total.detach()),
        "bce": float(bce.detach()),
        "dice": float(dice.detach()),
        "iou_hq": float(_iou(hq_logits.detach(), batch.labels).mean()),
        "iou_sam": float(_iou(sam_logits, batch.labels).mean()),
    }
    return total, logs


def _gather(feats: ImageFeatures, owner: torch.Tensor) -> ImageFeatures:
    hq = None if feats.hq_features is None else feats.hq_features[owner]
    return ImageFeatures(feats.embeddings[owner], hq)


# -- checkpoints and the loop -----------------------------------------------------------------


def save_hq_checkpoint(
    path: Path, model: Sam, opt: torch.optim.Optimizer, cfg: HQTrainConfig, state: HQTrainState
) -> None:
    """HQ parameters only (SAM is frozen and comes from ``cfg.init``), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(
        {
            "hq": {k: v.detach().clone() for k, v in hq_parameters(model).items()},
            "optimizer": opt.state_dict(),
            "train_config": cfg.to_dict(),
            "step": state.step,
            "wall_s": state.wall_s,
            "history": state.history,
            "decay_step": -1 if state.decay_step is None else state.decay_step,
        },
        tmp,
    )
    os.replace(tmp, path)


def load_hq_checkpoint(path: Path, model: Sam, opt: torch.optim.Optimizer) -> HQTrainState:
    ck = torch.load(path, map_location="cpu", weights_only=True)
    own = hq_parameters(model)
    if set(ck["hq"]) != set(own):
        raise CheckpointError(f"{path} holds HQ parameters of another architecture")
    with torch.no_grad():
        for k, v in ck["hq"].items():
            own[k].copy_(v)
    opt.load_state_dict(ck["optimizer"])
    decay = None if ck["decay_step"] < 0 else ck["decay_step"]
    return HQTrainState(ck["step"], ck["wall_s"], ck["history"], decay)


def export_hq(model: Sam, path: str | os.PathLike, cfg: HQTrainConfig, state: HQTrainState) -> None:
    """The full HQ model (frozen SAM + trained HQ modules) as safetensors, atomically."""
    from samkit.checkpoints import save_safetensors

    tmp = Path(str(path) + ".tmp")
    meta = {
        "samkit_hq_train_steps": str(state.step),
        "samkit_hq_train_wall_s": f"{state.wall_s:.0f}",
        "samkit_hq_train_init": cfg.init,
        "samkit_hq_train_command": cfg.command,
    }
    save_safetensors(model, tmp, meta)
    os.replace(tmp, path)


def train_hq(
    model: Sam,
    data,  # type: ignore[no-untyped-def]
    cfg: HQTrainConfig,
    out_dir: str | os.PathLike,
    resume: bool = True,
    stop_after: int | None = None,
    progress: bool = True,
) -> HQTrainState:
    """Train the HQ modules of ``model`` in place (everything else frozen). Checkpoints go to
    out_dir/last.pt (resumed from when present), logs to out_dir/history.jsonl; ``stop_after``
    ends early at that step as if cut off."""
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ck_path = out / "last.pt"
    params = freeze_all_but_hq(model)
    model.eval()  # no dropout / norm statistics anywhere; eval keeps frozen parts exact
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)
    state = HQTrainState()
    if resume and ck_path.exists():
        state = load_hq_checkpoint(ck_path, model, opt)
    (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    end = cfg.steps if stop_after is None else min(stop_after, cfg.steps)
    recent: deque[dict] = deque(maxlen=cfg.log_every * 4)
    bar = tqdm(total=cfg.steps, initial=state.step, disable=not progress, mininterval=5, ncols=120)
    last_save = t_prev = time.monotonic()
    budget = cfg.time_budget_s
    while state.step < end and (budget is None or state.wall_s < budget):
        if state.decay_step is None and (
            state.wall_s >= cfg.decay_at * budget
            if budget is not None
            else state.step >= int(cfg.decay_at * cfg.steps)
        ):
            state.decay_step = state.step
        for g in opt.param_groups:
            g["lr"] = cfg.lr * (0.1 if state.decay_step is not None else 1.0)
        batch = make_hq_batch(model, data, cfg, state.step)
        loss, logs = hq_train_step(model, batch, cfg, state.step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        now = time.monotonic()
        state.wall_s += now - t_prev
        t_prev = now
        state.step += 1
        recent.append(logs)
        bar.update(1)
        if state.step % cfg.log_every == 0 or state.step == end:
            log_progress(
                out,
                state,
                opt.param_groups[0]["lr"],
                recent,
                bar,
                {"loss": "loss", "iou_hq": "iou_hq", "iou_sam": "iou_sam"},
            )
        done = state.step == end or (budget is not None and state.wall_s >= budget)
        if now - last_save >= cfg.checkpoint_every_s or done:
            save_hq_checkpoint(ck_path, model, opt, cfg, state)
            if cfg.export:
                export_hq(model, cfg.export, cfg, state)
            last_save = now
    bar.close()
    return state
