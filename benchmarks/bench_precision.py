"""Image-encoder speed by precision on this CPU, against the official fp32 code in the same run.

    .venv/bin/python benchmarks/bench_precision.py --model vit_b --threads 2 --repeats 3

Rows: official segment-anything fp32; samkit fp32; samkit bf16 (encoder weights cast once,
``samkit.load(..., precision="bf16")``); samkit int8 (dynamic quantization of the encoder's
linear layers, ``torch.ao.quantization.quantize_dynamic``). Same random weights for all; times
are medians of alternating runs. Mask agreement: IoU of each reduced-precision mask with the fp32
mask for clicks on real photos (../shared/data) when present, else on a synthetic image.
Prints the machine (CPU, bf16 flags, threads, measured GEMM) first.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _images() -> list[np.ndarray]:
    from samkit.image_io import IMAGE_SUFFIXES, load_image

    shared = ROOT.parent / "shared" / "data" / "perseg-examples"
    paths = sorted(p for p in shared.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    photos = [p for p in paths if "mask" not in str(p).lower() and "annot" not in str(p).lower()]
    if photos:
        return [load_image(p) for p in photos[:3]]
    from conftest import synthetic_image

    return [synthetic_image(768, 1024, seed=0)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="vit_b")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-official", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from machine import header
    from official import twin_models
    from segment_anything import SamPredictor

    from samkit.models import CONFIGS
    from samkit.predictor import Predictor

    print(header())
    off, ours = twin_models(CONFIGS[args.model], seed=0)
    bf16 = copy.deepcopy(ours).set_precision(torch.bfloat16)
    int8 = copy.deepcopy(ours)
    int8.image_encoder = torch.ao.quantization.quantize_dynamic(
        int8.image_encoder, {torch.nn.Linear}, dtype=torch.qint8
    )
    images = _images()
    img = images[0]
    preds = {"samkit fp32": Predictor(ours), "samkit bf16": Predictor(bf16)}
    preds["samkit int8 (dynamic)"] = Predictor(int8)
    runs: dict[str, list[float]] = {k: [] for k in preds}
    if not args.no_official:
        runs = {"official fp32": [], **runs}
        po = SamPredictor(off)
    for _ in range(args.repeats):  # alternate so drift affects every row alike
        for name in runs:
            t = time.perf_counter()
            with torch.inference_mode():
                if name == "official fp32":
                    po.set_image(img)
                else:
                    preds[name].set_image(img)
            runs[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in runs.items()}
    base = med["samkit fp32"]
    off_t = med.get("official fp32")
    # Agreement with samkit fp32 on clicks at fixed fractions of each image.
    agree: dict[str, list[float]] = {k: [] for k in preds if k != "samkit fp32"}
    for im in images:
        h, w = im.shape[:2]
        for p in preds.values():
            p.set_image(im)
        for fx, fy in ((0.5, 0.5), (0.3, 0.6), (0.7, 0.3)):
            pt = [[fx * w, fy * h]]
            ref = preds["samkit fp32"].predict(pt, [1]).masks
            for name in agree:
                got = preds[name].predict(pt, [1]).masks
                inter = np.logical_and(ref, got).sum((1, 2))
                union = np.logical_or(ref, got).sum((1, 2))
                agree[name] += list(np.where(union > 0, inter / np.maximum(union, 1), 1.0))
    print(f"\n{args.model}, {img.shape[1]}x{img.shape[0]} image, {args.threads} thread(s)\n")
    print(
        "| encoder | seconds | vs samkit fp32 | vs official fp32 | mask IoU vs fp32 (min / mean) |"
    )
    print("|---|---|---|---|---|")
    for name, t in med.items():
        vs_off = f"{off_t / t:.2f}x" if off_t else "-"
        a = agree.get(name)
        iou = f"{min(a):.3f} / {np.mean(a):.3f}" if a else "-"
        print(f"| {name} | {t:.2f} | {base / t:.2f}x | {vs_off} | {iou} |")


if __name__ == "__main__":
    main()
