"""The one training loop. A *task* says what a step is (:mod:`samkit.train.sam_task` for SAM,
:mod:`samkit.train.hq_task` for HQ-SAM): its batches, its loss, the parameters that learn, what a
checkpoint keeps of the weights and what an export records. This module owns the rest:

- device and precision (named as in :mod:`samkit.runtime`): the model and every batch on one
  device, the step under bf16 / fp16 autocast (fp16 with a GradScaler on CUDA) while weights and
  optimiser stay float32; the losses compute in float32;
- AdamW on the task's parameter groups, gradient clipping, and the lr schedule: linear warm-up,
  then x0.1 at each ``decay_at`` fraction of the steps, or of the wall time with a time budget;
- ``OUT/last.pt``, written atomically, from which a rerun resumes: the weights, the optimiser,
  the RNG state, the step, the wall time, the log and the steps at which a budget decayed the lr;
- ``OUT/history.jsonl``, the tqdm bar, and the safetensors export (``cfg.export``).

Every random choice of step s comes from generators seeded with (seed, s), so a run that was cut
off and resumed from its checkpoint takes exactly the steps an uninterrupted run would."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from samkit.errors import CheckpointError
from samkit.models import Sam
from samkit.runtime import resolve

C = TypeVar("C", bound="TrainConfig")


@dataclass
class TrainConfig:
    """What every recipe shares; SamTrainConfig and HQTrainConfig add their task's options and
    defaults. decay_at: fractions of the run (steps, or ``time_budget_s``), lr x0.1 at each."""

    steps: int = 2000
    images_per_step: int = 4
    masks_per_image: int = 4
    lr: float = 8e-4
    warmup: int = 250
    decay_at: tuple[float, ...] = (60 / 90, 86.666 / 90)
    weight_decay: float = 0.1
    grad_clip: float | None = 1.0  # max gradient norm; None: no clipping
    seed: int = 0
    checkpoint_every_s: float = 180.0
    log_every: int = 25
    threads: int = 1
    # Train for this much wall time instead of ``steps`` (which then only caps the run).
    time_budget_s: float | None = None
    export: str | None = None  # also write the weights here (safetensors) at every checkpoint
    device: str = "auto"  # auto|cpu|cuda|cuda:N|mps (samkit.runtime)
    precision: str = "fp32"  # fp32|bf16|fp16|auto: autocast of the step; weights stay fp32
    command: str = ""

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls: type[C], d: dict) -> C:
        names = {f.name for f in fields(cls)}
        return cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names}
        )


@dataclass
class TrainState:
    step: int = 0
    wall_s: float = 0.0
    history: list[dict] = field(default_factory=list)
    decay_steps: list[int] = field(default_factory=list)  # when a time budget decayed the lr


class Batch(Protocol):
    def to(self, device: torch.device) -> Batch: ...


class Task(Protocol):
    """One training recipe over the loop."""

    cfg: TrainConfig
    postfix: dict[str, str]  # progress-bar name -> log key

    def param_groups(self, model: Sam) -> list[dict[str, Any]]:
        """Freeze what does not learn, set train/eval mode; AdamW's parameter groups."""
        ...

    def make_batch(self, model: Sam, data: Any, step: int) -> Batch:
        """The batch of ``step`` (images already on the model's device)."""
        ...

    def step_loss(self, model: Sam, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one step (not yet back-propagated) and its logged numbers."""
        ...

    def weights(self, model: Sam) -> dict[str, Any]:
        """The checkpoint entries that hold the learned weights."""
        ...

    def load_weights(self, model: Sam, ck: dict[str, Any]) -> None: ...

    def export_metadata(self, state: TrainState) -> dict[str, str]:
        """What an exported .safetensors records of the run."""
        ...


# -- precision ---------------------------------------------------------------------------------


def _autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# -- schedule and optimiser --------------------------------------------------------------------


def lr_factor(step: int, cfg: TrainConfig, decay_steps: list[int] | None = None) -> float:
    """Linear warm-up, then x0.1 at each of the ``decay_at`` fractions of the run (of the
    steps, or at the recorded ``decay_steps`` when the run has a time budget)."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    if cfg.time_budget_s is not None:
        return 0.1 ** sum(step >= d for d in decay_steps or [])
    return 0.1 ** sum(step >= int(f * cfg.steps) for f in cfg.decay_at)


def step_generator(seed: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator of step ``step``'s random choices."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + step)


def decay_groups(params: list[torch.nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices, none on biases, norms and embeddings of rank < 2."""
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


# -- checkpoints, logs, export -----------------------------------------------------------------


def _rng_state(device: torch.device) -> dict[str, Any]:
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def _set_rng_state(rng: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(rng["torch"])
    if device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"], device)


def save_checkpoint(
    path: Path,
    model: Sam,
    task: Task,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    state: TrainState,
) -> None:
    """Write atomically (tmp file + rename) so an interrupted save never leaves a broken file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    ck = {
        **task.weights(model),
        "optimizer": opt.state_dict(),
        "train_config": task.cfg.to_dict(),
        "step": state.step,
        "wall_s": state.wall_s,
        "history": state.history,
        "decay_steps": state.decay_steps,
        "rng": _rng_state(model.device),
    }
    if scaler.is_enabled():
        ck["scaler"] = scaler.state_dict()
    torch.save(ck, tmp)
    os.replace(tmp, path)


def load_checkpoint(
    path: Path,
    model: Sam,
    task: Task,
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
) -> TrainState:
    """Restore a checkpoint of this loop, or of the SAM and HQ trainers before it (no RNG state;
    HQ ones record one ``decay_step``, -1 for none)."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    try:
        task.load_weights(model, ck)
    except (CheckpointError, KeyError, RuntimeError) as e:
        raise CheckpointError(
            f"{path} does not fit this model and task ({e}); use another --out or --no-resume"
        ) from e
    opt.load_state_dict(ck["optimizer"])
    if scaler.is_enabled() and "scaler" in ck:
        scaler.load_state_dict(ck["scaler"])
    if "rng" in ck:
        _set_rng_state(ck["rng"], model.device)
    if "decay_steps" in ck:
        decay_steps = list(ck["decay_steps"])
    else:
        decay_steps = [] if ck.get("decay_step", -1) < 0 else [ck["decay_step"]]
    return TrainState(ck["step"], ck["wall_s"], ck["history"], decay_steps)


def export_weights(model: Sam, path: str | os.PathLike, meta: dict[str, str]) -> None:
    """The full model as safetensors with ``meta``, atomically."""
    from samkit.checkpoints import save_safetensors

    tmp = Path(str(path) + ".tmp")
    save_safetensors(model, tmp, meta)
    os.replace(tmp, path)


def log_progress(
    out: Path, state: TrainState, lr: float, recent: deque[dict], bar: Any, postfix: dict[str, str]
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


# -- the loop ----------------------------------------------------------------------------------


def run(
    model: Sam,
    task: Task,
    data: Any,
    out_dir: str | os.PathLike,
    resume: bool = True,
    stop_after: int | None = None,
    progress: bool = True,
) -> TrainState:
    """Train ``model`` in place (moved to ``task.cfg.device``) on ``data`` with ``task``.
    Checkpoints go to out_dir/last.pt (resumed from when present), logs to
    out_dir/history.jsonl. ``stop_after`` ends the run early at that step (as if cut off),
    leaving a checkpoint a later call resumes from."""
    from tqdm import tqdm

    cfg = task.cfg
    rt = resolve(cfg.device, cfg.precision)
    device, dtype = rt.device, rt.dtype
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ck_path = out / "last.pt"
    model.to(device)
    opt = torch.optim.AdamW(task.param_groups(model), lr=cfg.lr, betas=(0.9, 0.999))
    trainable = [p for p in model.parameters() if p.requires_grad]
    scaler = torch.amp.GradScaler(
        device.type, enabled=dtype == torch.float16 and device.type == "cuda"
    )
    state = TrainState()
    if resume and ck_path.exists():
        state = load_checkpoint(ck_path, model, task, opt, scaler)
    (out / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    end = cfg.steps if stop_after is None else min(stop_after, cfg.steps)
    recent: deque[dict] = deque(maxlen=cfg.log_every * 4)
    bar = tqdm(total=cfg.steps, initial=state.step, disable=not progress, mininterval=5, ncols=120)
    last_save = t_prev = time.monotonic()
    budget = cfg.time_budget_s
    while state.step < end and (budget is None or state.wall_s < budget):
        if budget is not None and len(state.decay_steps) < len(cfg.decay_at):
            if state.wall_s >= cfg.decay_at[len(state.decay_steps)] * budget:
                state.decay_steps.append(state.step)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * lr_factor(state.step, cfg, state.decay_steps)
        batch = task.make_batch(model, data, state.step).to(device)
        with _autocast(device, dtype):
            loss, logs = task.step_loss(model, batch, state.step)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.grad_clip is not None:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
        scaler.step(opt)
        scaler.update()
        now = time.monotonic()
        state.wall_s += now - t_prev
        t_prev = now
        state.step += 1
        recent.append(logs)
        bar.update(1)
        if state.step % cfg.log_every == 0 or state.step == end:
            log_progress(out, state, opt.param_groups[0]["lr"], recent, bar, task.postfix)
        done = state.step == end or (budget is not None and state.wall_s >= budget)
        if now - last_save >= cfg.checkpoint_every_s or done:
            save_checkpoint(ck_path, model, task, opt, scaler, state)
            if cfg.export:
                export_weights(model, cfg.export, task.export_metadata(state))
            last_save = now
    bar.close()
    model.eval()
    return state
