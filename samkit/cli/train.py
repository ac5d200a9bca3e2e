"""`samkit train` (SAM recipe) and `samkit train-hq` (HQ head on a frozen SAM)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from samkit.errors import ConfigError


def command_line(args: argparse.Namespace) -> str:
    """The command as typed, recorded in checkpoints and model cards."""
    return "samkit " + shlex.join(getattr(args, "argv", []) or [args.command])


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train or fine-tune SAM (SAM recipe, interactive prompt simulation, resumable)",
        description="Train SAM on synthetic scenes, an image+mask folder (also PerSeg layout) or "
        "a COCO json. Example: samkit train --data DIR --init samkit-tiny --freeze image_encoder",
    )
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)


def add_train_hq(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-hq",
        help="train an HQ-SAM head on a frozen SAM (thin-structure scenes or HQSeg-44K folders)",
        description="HQ-SAM training: the SAM given by --init stays frozen; only the HQ token, "
        "its MLP and the feature-fusion layers learn (BCE + dice on point samples).",
    )
    add_train_hq_arguments(p)
    p.set_defaults(func=cmd_train_hq)


def add_runtime_arguments(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--precision`` of both training commands."""
    p.add_argument(
        "--device",
        default="auto",
        help="auto|cpu|cuda|cuda:N|mps (default auto: CUDA, else MPS, else CPU)",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "fp16", "auto"],
        help="autocast precision of each step; weights and optimiser stay fp32 (fp16 uses a "
        "gradient scaler on CUDA; auto: what the hardware runs well) (default fp32)",
    )


def add_train_arguments(p: argparse.ArgumentParser) -> None:
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
        "--config",
        default="tiny",
        help="architecture when training from scratch: a name (tiny, vit_b, vit_t, ...) or a "
        ".json file of SamConfig fields (as SamConfig.to_dict() writes them; absent fields keep "
        'their defaults), e.g. {"image_size": 256, "tiny_vit": {"embed_dims": [32, 64, 80, 160]}}'
        " for a narrower TinyViT (default: tiny)",
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
    add_runtime_arguments(p)


def add_train_hq_arguments(p: argparse.ArgumentParser) -> None:
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
    add_runtime_arguments(p)


def runtime(args: argparse.Namespace) -> tuple[str, str]:
    """Resolve ``--device`` / ``--precision`` (errors before any work) and say what was chosen."""
    from samkit.runtime import resolve

    rt = resolve(args.device, args.precision)
    print(f"training on {rt.describe()}")
    return str(rt.device), rt.precision


def architecture(config: str):  # type: ignore[no-untyped-def]
    """``--config``: a configuration name, or a .json file of SamConfig fields (those of
    ``SamConfig.to_dict()``; absent ones keep their defaults, a ``tiny_vit`` object's too) for new
    sizes such as a narrower TinyViT."""
    import json

    from samkit.models import CONFIGS, SamConfig
    from samkit.models.tiny_vit import TinyViTConfig

    if config.endswith(".json"):
        try:
            d = {**SamConfig().to_dict(), **json.loads(Path(config).read_text())}
            if d["tiny_vit"] is not None:
                d["tiny_vit"] = {**TinyViTConfig().to_dict(), **d["tiny_vit"]}
            return SamConfig.from_dict(d)
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise ConfigError(
                f"cannot read the architecture in {config} ({e}); it must be a JSON object of "
                "SamConfig fields, as SamConfig.to_dict() writes them"
            ) from None
    if config not in CONFIGS:
        raise ConfigError(
            f"unknown --config {config}; choose one of {', '.join(CONFIGS)}, or give a .json "
            "file of SamConfig fields"
        )
    return CONFIGS[config]


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from samkit.data import open_dataset
    from samkit.models import build_sam
    from samkit.train.sam_task import SamTrainConfig, train

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device, precision = runtime(args)
    if args.init:
        from samkit.checkpoints import load

        model = load(args.init)
    else:
        model = build_sam(architecture(args.config))
    data = open_dataset(args.data, model.image_size, images=args.images)
    cfg = SamTrainConfig(
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
        device=device,
        precision=precision,
        command=command_line(args),
    )
    state = train(
        model, data, cfg, Path(args.out), resume=not args.no_resume, progress=not args.no_progress
    )
    last = state.history[-1] if state.history else {}
    print(f"done: {state.step} steps in {state.wall_s / 60:.1f} min; last log {last}")
    print(f"checkpoint: {Path(args.out) / 'last.pt'}")
    return 0


def cmd_train_hq(args: argparse.Namespace) -> int:
    import torch

    from samkit.checkpoints import load
    from samkit.data.hqseg import open_hq_dataset
    from samkit.train.hq_task import HQTrainConfig, hq_from_sam, train_hq

    torch.set_num_threads(args.threads)
    device, precision = runtime(args)
    model = hq_from_sam(load(args.init))
    data = open_hq_dataset(args.data, model.image_size, train=True)
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
        device=device,
        precision=precision,
        init=str(args.init),
        command=command_line(args),
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
