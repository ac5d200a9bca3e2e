"""``samkit eval prompts DATA``: 1-click, box and N-click mIoU on a folder, COCO json or
synthetic scenes, with a plot of mIoU against clicks."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SYNTHETIC_EVAL_SEED = 1000  # held out: the trainer's scenes use seed 1


def open_eval_dataset(spec: str, size: int, limit: int, images: str | None = None):
    """'synthetic[:SEED]' (held-out scenes at the model's input size) or a folder / COCO json."""
    if spec.startswith("synthetic"):
        from samkit.data.synthetic import SyntheticDataset

        seed = int(spec.split(":")[1]) if ":" in spec else SYNTHETIC_EVAL_SEED
        return SyntheticDataset(seed=seed, size=size, length=limit)
    from samkit.data.folders import open_folder_or_coco

    return open_folder_or_coco(spec, images)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="'synthetic[:SEED]', an image+mask folder or a COCO .json")
    p.add_argument("--images", help="image folder for a COCO .json")
    p.add_argument("--clicks", type=int, default=5, help="clicks per mask (default 5)")
    p.add_argument("--limit", type=int, default=100, help="images to evaluate (default 100)")
    p.add_argument("--size", type=int, help="synthetic scene size (default: the model's input)")
    p.add_argument("--plot", help="write mIoU against clicks to this PNG")
    p.add_argument("--json", help="write the summary to this JSON file")


def run(args: argparse.Namespace, model) -> int:  # type: ignore[no-untyped-def]
    import torch

    from samkit.eval.prompts import evaluate, plot_clicks

    torch.set_num_threads(getattr(args, "threads", 1) or 1)
    data = open_eval_dataset(args.data, args.size or model.image_size, args.limit, args.images)
    res = evaluate(model, data, n_clicks=args.clicks, limit=args.limit, progress=True)
    summary = {"data": args.data, "model": args.model, **res.summary()}
    print(
        f"{res.n_masks} masks on {res.n_images} images: 1-click mIoU {res.miou_1click:.3f} "
        f"(best of 3: {res.miou_1click_best_of_3:.3f}), box mIoU {res.miou_box:.3f}, "
        f"{args.clicks}-click mIoU {res.miou_clicks[-1]:.3f}"
    )
    print("mIoU per click:", " ".join(f"{v:.3f}" for v in res.miou_clicks))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    if args.plot:
        plot_clicks({Path(str(args.model)).stem: res}, args.plot)
        print(f"plot: {args.plot}")
    return 0
