"""TinyViT (MobileSAM's vit_t): samkit against the official MobileSAM code (PyPI
mobilesam-mirror, module mobile_sam) on the same random weights, in one run, one table.

    .venv/bin/python benchmarks/bench_tinyvit.py [--repeats 3] [--threads 1] [--quick]

Rows, each official vs samkit fp32 vs samkit "auto" precision (bf16 on CPUs with bf16 units):
- encoder: one 1024 x 1024 image through the image encoder (normalised input);
- one click: prompt encoding + mask decoding + upscaling for one foreground point, the image
  already embedded; mean over many clicks at random points (the decoder is float32 whatever the
  encoder's precision, so there is no "auto" column);
- everything mode: SamAutomaticMaskGenerator vs samkit.MaskGenerator, same settings (32 x 32
  points, batches of 64), on a 1024 x 1024 real photo, embedding included.
The models alternate call by call so that drift on a shared machine affects them alike; times are
medians of --repeats. Random weights predict IoUs of 0-0.6 and stabilities of 0-0.8, so the
thresholds below (identical on both sides) are lowered until a realistic number of masks survive.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
PHOTO = ROOT.parent / "shared/data/perseg-examples/Images/colorful_sneaker/00.jpg"
# Random weights predict near-whole-image masks whose boxes all overlap, so box NMS would keep
# one: it is switched off (1.0) and the IoU / stability filters keep the top ~2 % (tens of masks
# at 32 x 32 points: ~56 of 3072 by a 16 x 16 count without thresholds).
AMG = dict(
    pred_iou_thresh=0.3, stability_score_thresh=0.3, box_nms_thresh=1.0, output_mode="binary_mask"
)


def median_times(
    calls: dict[str, Callable[[], object]], repeats: int, warm_up: bool = True
) -> dict[str, float]:
    """Median seconds per call, the calls interleaved; first one untimed warm-up each."""
    for f in calls.values() if warm_up else ():
        f()
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(repeats):
        for k, f in calls.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def photo(size: int = 1024) -> np.ndarray:
    """The benchmark photo resized to size x size, H x W x 3 uint8."""
    from PIL import Image

    from samkit.image_io import load_image

    if not PHOTO.exists():
        raise SystemExit(f"{PHOTO} is missing: the everything-mode row needs ../shared/data")
    img = Image.fromarray(load_image(PHOTO)).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img)


def agreement(official: list[dict], ours: list[dict]) -> tuple[float, float]:
    """(share of the official masks that samkit reproduces at IoU >= 0.99, mean best IoU)."""
    if not official or not ours:
        return float(not official and not ours), 0.0
    a = torch.from_numpy(np.stack([r["segmentation"] for r in official])).flatten(1).float()
    b = torch.from_numpy(np.stack([r["segmentation"] for r in ours])).flatten(1).float()
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    best = (inter / union.clamp(min=1)).max(1).values
    return float((best >= 0.99).float().mean()), float(best.mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per row (median)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for every model")
    ap.add_argument("--clicks", type=int, default=50, help="clicks averaged in the click row")
    ap.add_argument(
        "--everything-repeats", type=int, default=1, help="timed runs of everything mode"
    )
    ap.add_argument(
        "--quick", action="store_true", help="smoke test: 1 repeat, 10 clicks, 8 x 8 points"
    )
    args = ap.parse_args()
    repeats, clicks, side = args.repeats, args.clicks, 32
    if args.quick:
        repeats, clicks, side = 1, 10, 8
        args.everything_repeats = 1
    torch.set_num_threads(args.threads)

    import machine
    from official import tiny_vit_twins

    import samkit
    from samkit.runtime import resolve

    with warnings.catch_warnings():  # timm's deprecation and registry warnings
        warnings.simplefilter("ignore")
        from mobile_sam import SamAutomaticMaskGenerator, SamPredictor

    off, ours = tiny_vit_twins(hq=False, seed=0)
    auto = resolve("cpu", "auto")
    ours_auto = copy.deepcopy(ours).set_precision(auto.dtype)
    print(machine.header())
    print(f'samkit "auto" precision here: {auto.describe()}')

    # -- encoder
    x = torch.randn(1, 3, 1024, 1024)
    with torch.inference_mode():
        ref = off.image_encoder(x)
        diff = (ours.image_encoder(x) - ref).abs().max().item()
        diff_auto = (ours_auto.image_encoder(x.to(auto.dtype)).float() - ref).abs().max().item()
        enc = median_times(
            {
                "official": lambda: off.image_encoder(x),
                "fp32": lambda: ours.image_encoder(x),
                "auto": lambda: ours_auto.image_encoder(x.to(auto.dtype)),
            },
            repeats,
        )

    # -- one click
    img = photo()
    h, w = img.shape[:2]
    po, pk = SamPredictor(off), samkit.Predictor(ours)
    with torch.inference_mode():
        po.set_image(img)
    pk.set_image(img)
    rng = np.random.default_rng(0)
    points = rng.uniform(0, [w, h], size=(clicks, 1, 2))
    labels = np.ones(1, dtype=int)
    state = {"i": 0}

    def click_official() -> None:
        with torch.inference_mode():
            po.predict(points[state["i"] % clicks], labels, multimask_output=True)

    def click_samkit() -> None:
        pk.predict(points=points[state["i"] % clicks], labels=labels, multimask=True)

    click_times: dict[str, list[float]] = {"official": [], "fp32": []}
    click_official(), click_samkit()
    worst = 0.0
    for i in range(clicks):
        state["i"] = i
        for name, f in (("official", click_official), ("fp32", click_samkit)):
            t = time.perf_counter()
            f()
            click_times[name].append(time.perf_counter() - t)
        with torch.inference_mode():
            _, _, low_o = po.predict(points[i], labels, multimask_output=True)
        low_k = pk.predict(points=points[i], labels=labels, multimask=True).logits
        worst = max(worst, float(np.abs(low_o - low_k).max()))
    click = {k: statistics.mean(v) for k, v in click_times.items()}

    # -- everything mode
    opts = dict(points_per_side=side, points_per_batch=64, **AMG)
    gens = {
        "official": SamAutomaticMaskGenerator(off, **opts),
        "fp32": samkit.MaskGenerator(ours, **opts),
        "auto": samkit.MaskGenerator(ours_auto, **opts),
    }
    results: dict[str, list[dict]] = {}

    def generate(name: str) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                results[name] = gens[name].generate(img)

        return run

    # The rows above warmed the encoders and decoders up.
    amg = median_times({k: generate(k) for k in gens}, args.everything_repeats, warm_up=False)
    match_fp32 = agreement(results["official"], results["fp32"])
    match_auto = agreement(results["official"], results["auto"])

    p = auto.precision
    print(
        f"\n{args.threads} thread(s), median of {repeats}; random MobileSAM weights (BatchNorm "
        "statistics and attention-bias tables too), the same on both sides\n"
    )
    print(f"| 1024 px | official | samkit fp32 | samkit {p} | fp32 vs official | {p} vs official |")
    print("|---|---:|---:|---:|---:|---:|")
    print(
        f"| encoder | {enc['official']:.2f} s | {enc['fp32']:.2f} s | {enc['auto']:.2f} s "
        f"| {enc['official'] / enc['fp32']:.2f}x | {enc['official'] / enc['auto']:.2f}x |"
    )
    print(
        f"| one click (mean of {clicks}) | {click['official'] * 1e3:.1f} ms "
        f"| {click['fp32'] * 1e3:.1f} ms | (fp32 decoder) "
        f"| {click['official'] / click['fp32']:.2f}x | |"
    )
    print(
        f"| everything, {side} x {side} points | {amg['official']:.1f} s | {amg['fp32']:.1f} s "
        f"| {amg['auto']:.1f} s | {amg['official'] / amg['fp32']:.2f}x "
        f"| {amg['official'] / amg['auto']:.2f}x |"
    )
    n_o, n_f, n_a = (len(results[k]) for k in ("official", "fp32", "auto"))
    print(
        f"\nencoder max |diff| vs official: fp32 {diff:.1e}, {p} {diff_auto:.1e}; "
        f"click low-res logits max |diff| (fp32): {worst:.1e}"
    )
    print(
        f"everything mode ({PHOTO.parent.name}/{PHOTO.name} resized to 1024 x 1024; "
        f"pred_iou_thresh {AMG['pred_iou_thresh']}, stability_score_thresh "
        f"{AMG['stability_score_thresh']}, box_nms_thresh {AMG['box_nms_thresh']}, other options "
        f"the defaults; median of {args.everything_repeats}): masks official {n_o}, "
        f"samkit fp32 {n_f}, {p} {n_a}; official masks reproduced at IoU >= 0.99 (mean best "
        f"IoU): fp32 {match_fp32[0]:.1%} ({match_fp32[1]:.4f}), {p} {match_auto[0]:.1%} "
        f"({match_auto[1]:.4f})"
    )


if __name__ == "__main__":
    main()
