"""The SAM training loop: one encoder pass per batch, several masks per image, interactive
rounds sharing that pass; AdamW with warm-up and step decay, gradient clipping, a seed for
determinism, resumable checkpoints and a tqdm progress bar with loss and running mIoU.

Every random choice of step s comes from a generator seeded with (seed, s), so a run that was cut
off and resumed from its checkpoint takes exactly the steps an uninterrupted run would."""

from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from samkit.errors import ConfigError
from samkit.models import Sam
from samkit.models.sam import ImageFeatures
from samkit.train.losses import SamLoss, mask_iou, sam_loss
from samkit.train.prompts import error_points, noisy_boxes, round_plan, sample_points
from samkit.transforms import resize_image


class MaskDataset(Protocol):
    """What the trainer reads: item i is (H x W x 3 uint8 image, M x H x W bool masks)."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class TrainConfig:
    steps: int = 2000
    images_per_step: int = 4
    masks_per_image: int = 4
    rounds: int = 11  # the paper's 1 + 8 + 2; fewer is cheaper on a CPU
    lr: float = 8e-4
    warmup: int = 250
    decay_at: tuple[float, float] = (60 / 90, 86.666 / 90)  # fractions of steps, lr x 0.1 each
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    freeze: tuple[str, ...] = ()  # top-level modules: image_encoder, prompt_encoder, mask_decoder
    max_mask_fraction: float = 0.9  # the paper drops masks covering more than 90% of the image
    checkpoint_every_s: float = 180.0
    log_every: int = 25
    threads: int = 1
    export: str | None = None  # also write the weights here (safetensors) at every checkpoint
    # Train for this much wall time instead of ``steps`` (which then only caps the run); the
    # lr decays when ``decay_at`` fractions of the time have passed.
    time_budget_s: float | None = None
    command: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["decay_at"] = list(self.decay_at)
        d["freeze"] = list(self.freeze)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        d["decay_at"] = tuple(d["decay_at"])
        d["freeze"] = tuple(d["freeze"])
        return cls(**d)


@dataclass
class Batch:
    """images: B x 3 x S x S preprocessed; gt: N x S x S bool (input frame, padded);
    valid: N x S x S bool (the unpadded image area); image_of: N long, the image of each mask."""

    images: torch.Tensor
    gt: torch.Tensor
    valid: torch.Tensor
    image_of: torch.Tensor


@dataclass
class TrainState:
    step: int = 0
    wall_s: float = 0.0
    history: list[dict] = field(default_factory=list)
    decay_steps: list[int] = field(default_factory=list)  # when a time budget decayed the lr


def lr_factor(step: int, cfg: TrainConfig, decay_steps: list[int] | None = None) -> float:
    """Linear warm-up, then x0.1 at each of the ``decay_at`` fractions of the run (of the
    steps, or at the recorded ``decay_steps`` when the run has a time budget)."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if cfg.time_budget_s is not None:
        return 0.1 ** sum(step >= d for d in decay_steps or [])
    return 0.1 ** sum(step >= int(f * cfg.steps) for f in cfg.decay_at)


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def make_batch(model: Sam, data: MaskDataset, cfg: TrainConfig, step: int) -> Batch:
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
        raise ConfigError(f"step {step}: no usable masks in the batch (all empty or > 90%)")
    x = torch.stack([model.preprocess(i) for i in images])
    return Batch(
        x,
        torch.from_numpy(np.stack(gts)),
        torch.from_numpy(np.stack(valids)),
        torch.tensor(owner),
    )


def simulate(
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
    low = model.prompt_encoder.mask_input_size
    target = F.interpolate(gt[:, None].float(), size=low, mode="area")[:, 0]
    if first == "box":
        boxes = noisy_boxes(gt, gen)
        coords = torch.zeros(n, 0, 2)
        labels = torch.zeros(n, 0)
    else:
        boxes = None
        coords, _ = sample_points(gt, gen)
        coords = coords[:, None]
        labels = torch.ones(n, 1)
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
        mask_in = logits[torch.arange(n), choose][:, None].detach()
        loss.chosen_iou = mask_iou(mask_in[:, 0] > 0, target > 0.5)
    return losses


def train_step(
    model: Sam, batch: Batch, cfg: TrainConfig, step: int
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one step (not yet back-propagated) and its logged numbers."""
    gen = step_generator(cfg.seed, step)
    plan = round_plan(cfg.rounds, gen)
    frozen_encoder = "image_encoder" in cfg.freeze
    with torch.set_grad_enabled(not frozen_encoder and torch.is_grad_enabled()):
        feats = model.encode(batch.images)
    n = len(batch.gt)
    use_box = torch.rand(n, generator=gen) < 0.5
    all_losses: list[SamLoss] = []
    first_iou, last_iou, total = [], [], torch.zeros(())
    for first, sel in (("point", ~use_box), ("box", use_box)):
        idx = sel.nonzero()[:, 0]
        if len(idx) == 0:
            continue
        owner = batch.image_of[idx]
        hq = None if feats.hq_features is None else feats.hq_features[owner]
        f = ImageFeatures(feats.embeddings[owner], hq)
        losses = simulate(model, f, batch.gt[idx], batch.valid[idx], first, plan, gen)
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


def make_optimizer(model: Sam, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW (0.9, 0.999); no weight decay on biases, norms and embeddings of rank < 2."""
    for name in cfg.freeze:
        if not hasattr(model, name):
            raise ConfigError(
                f"cannot freeze '{name}': choose from image_encoder, prompt_encoder, mask_decoder"
            )
        getattr(model, name).requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": rest, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))


def save_checkpoint(
    path: Path, model: Sam, opt: torch.optim.Optimizer, cfg: TrainConfig, state: TrainState
) -> None:
    """Write atomically (tmp file + rename) so an interrupted save never leaves a broken file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "model_config": model.config.to_dict(),  # type: ignore[union-attr]
            "train_config": cfg.to_dict(),
            "step": state.step,
            "wall_s": state.wall_s,
            "history": state.history,
            "decay_steps": state.decay_steps,
        },
        tmp,
    )
    os.replace(tmp, path)


def load_checkpoint(path: Path, model: Sam, opt: torch.optim.Optimizer) -> TrainState:
    ck = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    return TrainState(ck["step"], ck["wall_s"], ck["history"], ck.get("decay_steps", []))


def export_weights(
    model: Sam, path: str | os.PathLike, cfg: TrainConfig, state: TrainState
) -> None:
    from samkit.checkpoints import save_safetensors

    tmp = Path(str(path) + ".tmp")
    save_safetensors(
        model,
        tmp,
        {
            "samkit_train_steps": str(state.step),
            "samkit_train_wall_s": f"{state.wall_s:.0f}",
            "samkit_train_command": cfg.command,
        },
    )
    os.replace(tmp, path)


def log_progress(
    out: Path,
    state: Any,
    lr: float,
    recent: deque[dict],
    bar: Any,
    postfix: dict[str, str],
) -> None:
    """Average the recent steps' logs into one record (appended to ``state.history`` and
    out/history.jsonl) and show the ``postfix`` entries (bar name -> log key) on the bar."""
    avg = {k: float(np.mean([r[k] for r in recent])) for k in recent[-1]}
    rec = {
        "step": state.step,
        "lr": lr,
        "wall_s": round(state.wall_s, 1),
        **{k: round(v, 4) for k, v in avg.items()},
    }
    state.history.append(rec)
    with open(out / "history.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")
    bar.set_postfix({name: f"{avg[k]:.3f}" for name, k in postfix.items()})


def train(
    model: Sam,
    data: MaskDataset,
    cfg: TrainConfig,
    out_dir: str | os.PathLike,
    resume: bool = True,
    stop_after: int | None = None,
    progress: bool = True,
) -> TrainState:
    """Train ``model`` in place; checkpoints go to out_dir/last.pt (resumed from when present),
    logs to out_dir/history.jsonl. ``stop_after`` ends the run early at that step (as if cut
    off), leaving a checkpoint a later call resumes from."""
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ck_path = out / "last.pt"
    model.train()
    opt = make_optimizer(model, cfg)
    state = load_checkpoint(ck_path, model, opt) if resume and ck_path.exists() else TrainState()
    (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    end = cfg.steps if stop_after is None else min(stop_after, cfg.steps)
    recent: deque[dict] = deque(maxlen=cfg.log_every * 4)
    bar = tqdm(
        total=cfg.steps,
        initial=state.step,
        disable=not progress,
        mininterval=5,
        dynamic_ncols=False,
        ncols=120,
    )
    last_save = time.monotonic()
    t_prev = time.monotonic()
    budget = cfg.time_budget_s
    while state.step < end and (budget is None or state.wall_s < budget):
        if budget is not None and len(state.decay_steps) < len(cfg.decay_at):
            if state.wall_s >= cfg.decay_at[len(state.decay_steps)] * budget:
                state.decay_steps.append(state.step)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * lr_factor(state.step, cfg, state.decay_steps)
        batch = make_batch(model, data, cfg, state.step)
        loss, logs = train_step(model, batch, cfg, state.step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], cfg.grad_clip
        )
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
                {"loss": "loss", "miou1": "miou_first", "miou": "miou_last"},
            )
        done = state.step == end or (budget is not None and state.wall_s >= budget)
        if now - last_save >= cfg.checkpoint_every_s or done:
            save_checkpoint(ck_path, model, opt, cfg, state)
            if cfg.export:
                export_weights(model.eval(), cfg.export, cfg, state)
                model.train()
            last_save = now
    bar.close()
    model.eval()
    return state
