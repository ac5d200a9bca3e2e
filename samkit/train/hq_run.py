"""Command-line front of HQ-SAM training (``samkit train-hq``)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        default="synthetic-thin",
        help="'synthetic-thin[:SEED]' (thin-structure scenes, seed 1) or a folder in an "
        "HQSeg-44K layout: im/ + gt/, images/ + masks/, or NAME.jpg next to NAME.png "
        "(searched recursively) (default: synthetic-thin)",
    )
    p.add_argument(
        "--init",
        default="samkit-tiny",
        help="the frozen SAM: a zoo name or a .pth/.safetensors path; a SAM gets a fresh HQ "
        "head, an HQ model's head is trained further (default: samkit-tiny)",
    )
    p.add_argument("--out", default="runs/hq", help="checkpoint folder (resumed from)")
    p.add_argument("--steps", type=int, default=2000, help="steps (a cap with --minutes)")
    p.add_argument("--minutes", type=float, help="train for this wall time (lr x0.1 at 10/12)")
    p.add_argument("--images-per-step", type=int, default=4)
    p.add_argument("--masks-per-image", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--jitter",
        type=float,
        nargs=2,
        default=(0.1, 2.0),
        metavar=("MIN", "MAX"),
        help="large-scale jitter scale range (default 0.1 2.0)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--checkpoint-every", type=float, default=120.0, help="seconds")
    p.add_argument("--export", help="also write the full HQ model to this .safetensors")
    p.add_argument("--no-resume", action="store_true", help="ignore OUT/last.pt")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import torch

    from samkit.checkpoints import load
    from samkit.data.hqseg import open_hq_dataset
    from samkit.train.hq import HQTrainConfig, hq_from_sam, train_hq

    torch.set_num_threads(args.threads)
    model = hq_from_sam(load(args.init))
    data = open_hq_dataset(args.data, model.image_size, train=True)
    argv = sys.argv[2:] if "train-hq" in sys.argv[1:2] else sys.argv[1:]
    cfg = HQTrainConfig(
        steps=args.steps,
        images_per_step=args.images_per_step,
        masks_per_image=args.masks_per_image,
        lr=args.lr,
        jitter=tuple(args.jitter),
        seed=args.seed,
        checkpoint_every_s=args.checkpoint_every,
        log_every=args.log_every,
        threads=args.threads,
        time_budget_s=None if args.minutes is None else args.minutes * 60,
        export=args.export,
        init=str(args.init),
        command="samkit train-hq " + shlex.join(argv),
    )
    state = train_hq(
        model, data, cfg, Path(args.out), resume=not args.no_resume, progress=not args.no_progress
    )
    last = state.history[-1] if state.history else {}
    print(f"done: {state.step} steps in {state.wall_s / 60:.1f} min; last log {last}")
    print(f"checkpoint: {Path(args.out) / 'last.pt'}")
    if args.export:
        print(f"HQ model: {args.export}")
    return 0
