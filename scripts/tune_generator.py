"""Choose the everything-mode thresholds that suit a model and store them in its safetensors
metadata (``samkit_generator``), so that ``samkit everything`` with that model finds objects.

    .venv/bin/python scripts/tune_generator.py samkit/weights/samkit-tiny.safetensors [--write]

For each candidate (pred_iou_thresh, stability_score_thresh) it runs the generator on held-out
synthetic scenes (never the real photos: those are the evaluation set) and scores a setting by
the mean over ground-truth objects of the best IoU of any kept mask (recall of objects),
penalised by the share of kept masks that match no object (IoU < 0.5). Prints a table; with
--write it stores the best setting in the file's metadata. The real photos in
../shared/data are then only measured with it (reported, not tuned on).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = [
    (0.88, 0.95),  # the official defaults
    (0.8, 0.9),
    (0.7, 0.85),
    (0.6, 0.8),
    (0.5, 0.7),
    (0.4, 0.6),
    (0.3, 0.5),
    (0.2, 0.4),
]


def score(
    model, images_and_masks, pred_iou: float, stab: float, pps: int
) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """(mean best IoU per object, share of kept masks matching an object, masks per image)."""
    from samkit.automatic import MaskGenerator
    from samkit.eval.metrics import iou

    gen = MaskGenerator(
        model, points_per_side=pps, pred_iou_thresh=pred_iou, stability_score_thresh=stab
    )
    best, matched, kept = [], [], []
    for image, gts in images_and_masks:
        masks = [a["segmentation"] for a in gen.generate(image)]
        kept.append(len(masks))
        for gt in gts:
            best.append(max((iou(m, gt) for m in masks), default=0.0))
        for m in masks:
            matched.append(max((iou(m, gt) for gt in gts), default=0.0) >= 0.5)
    return float(np.mean(best)), float(np.mean(matched)) if matched else 0.0, float(np.mean(kept))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weights")
    ap.add_argument("--scenes", type=int, default=12)
    ap.add_argument("--points-per-side", type=int, default=16)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)

    import samkit
    from samkit.checkpoints import GENERATOR_KEY, save_safetensors
    from samkit.data import open_dataset

    model = samkit.load(args.weights, device="cpu")
    data = open_dataset("synthetic", model.image_size * 2, split="eval", limit=args.scenes)
    pairs = []
    for i in range(args.scenes):
        item = data[i]
        image, masks = (item["image"], item["masks"]) if isinstance(item, dict) else item[:2]
        pairs.append((np.asarray(image), [np.asarray(m, bool) for m in masks]))
    rows = []
    print("| pred_iou_thresh | stability_score_thresh | object recall (mean best IoU) | "
          "kept masks matching an object | masks per image |")  # fmt: skip
    print("|---|---|---|---|---|")
    for pred_iou, stab in CANDIDATES:
        rec, prec, n = score(model, pairs, pred_iou, stab, args.points_per_side)
        rows.append((rec * (0.5 + 0.5 * prec), pred_iou, stab))
        print(f"| {pred_iou} | {stab} | {rec:.3f} | {prec:.3f} | {n:.1f} |")
    _, pred_iou, stab = max(rows)
    print(f"\nchosen: pred_iou_thresh {pred_iou}, stability_score_thresh {stab}")
    if args.write:
        model.generator_defaults = {"pred_iou_thresh": pred_iou, "stability_score_thresh": stab}
        from safetensors import safe_open

        with safe_open(args.weights, framework="pt") as f:
            extra = {k: v for k, v in (f.metadata() or {}).items() if k != GENERATOR_KEY}
        extra.pop("samkit_config", None)
        save_safetensors(model, args.weights, extra)
        print(f"wrote {GENERATOR_KEY} into {args.weights}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
