"""Command-line front of the trainer, shared by ``samkit train`` and ``python -m samkit.train``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from samkit.errors import ConfigError

SYNTHETIC_TRAIN_SEED = 1  # validation / test scenes use other seeds (see samkit.eval)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        default="synthetic",
        help="'synthetic' (procedural scenes), an image+mask folder, a PerSeg folder "
        "(Images/, Annotations/) or a COCO .json (default: synthetic)",
    )
    p.add_argument("--images", help="image folder for a COCO .json (default: next to it)")
    p.add_argument(
        "--init",
        help="start from weights: a zoo name (vit_b, samkit-tiny, ...) or a "
        ".pth/.safetensors path (default: random init)",
    )
    p.add_argument(
        "--config", default="tiny", help="architecture when training from scratch (default: tiny)"
    )
    p.add_argument(
        "--freeze",
        nargs="*",
        default=[],
        choices=["image_encoder", "prompt_encoder", "mask_decoder"],
    )
    p.add_argument("--out", default="runs/train", help="checkpoint folder (resumed from)")
    p.add_argument("--steps", type=int, default=2000, help="steps (a cap with --minutes)")
    p.add_argument(
        "--minutes",
        type=float,
        help="train for this much wall time; the lr decays at 2/3 and 96%% of it",
    )
    p.add_argument("--images-per-step", type=int, default=4)
    p.add_argument("--masks-per-image", type=int, default=4)
    p.add_argument("--rounds", type=int, default=11, help="interactive rounds per mask (11)")
    p.add_argument("--lr", type=float, default=8e-4)
    p.add_argument("--warmup", type=int, default=250)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=25, help="steps between log records")
    p.add_argument("--checkpoint-every", type=float, default=180.0, help="seconds")
    p.add_argument(
        "--export", help="also write the weights to this .safetensors at each checkpoint"
    )
    p.add_argument("--no-resume", action="store_true", help="ignore OUT/last.pt and start over")
    p.add_argument("--no-progress", action="store_true")


def open_dataset(spec: str, size: int, images: str | None = None):
    """'synthetic[:SEED]', a folder, or a COCO .json -> a dataset of (image, masks)."""
    if spec.startswith("synthetic"):
        from samkit.data.synthetic import SyntheticDataset

        seed = int(spec.split(":")[1]) if ":" in spec else SYNTHETIC_TRAIN_SEED
        return SyntheticDataset(seed=seed, size=size)
    from samkit.data.folders import open_folder_or_coco

    return open_folder_or_coco(spec, images)


def run(args: argparse.Namespace) -> int:
    import torch

    from samkit.models import CONFIGS, build_sam
    from samkit.train.trainer import TrainConfig, train

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.init:
        from samkit.checkpoints import load

        model = load(args.init)
    else:
        if args.config not in CONFIGS:
            raise ConfigError(f"unknown --config {args.config}; choose one of {', '.join(CONFIGS)}")
        model = build_sam(args.config)
    data = open_dataset(args.data, model.image_size, args.images)
    cfg = TrainConfig(
        steps=args.steps,
        images_per_step=args.images_per_step,
        masks_per_image=args.masks_per_image,
        rounds=args.rounds,
        lr=args.lr,
        warmup=args.warmup,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        seed=args.seed,
        freeze=tuple(args.freeze),
        checkpoint_every_s=args.checkpoint_every,
        log_every=args.log_every,
        time_budget_s=None if args.minutes is None else args.minutes * 60,
        threads=args.threads,
        export=args.export,
        command="samkit train "
        + shlex.join(sys.argv[2:] if "train" in sys.argv[1:2] else sys.argv[1:]),
    )
    state = train(
        model, data, cfg, Path(args.out), resume=not args.no_resume, progress=not args.no_progress
    )
    last = state.history[-1] if state.history else {}
    print(f"done: {state.step} steps in {state.wall_s / 60:.1f} min; last log {last}")
    print(f"checkpoint: {Path(args.out) / 'last.pt'}")
    return 0
