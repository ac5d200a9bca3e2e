"""One script for a GPU session (under 5 minutes on one GPU): parity and speed against the
official code on the device, printed as one markdown table.

    .venv/bin/python benchmarks/gpu_check.py                  # on a GPU machine
    .venv/bin/python benchmarks/gpu_check.py --device cpu --quick   # smoke test anywhere

Rows: parity on the device (vit_b, random weights: embedding, low-res logits, IoU predictions,
max abs difference official vs samkit); image embeddings per second, official vs samkit, vit_b
and vit_h, fp32 and bf16 (official bf16 = its model cast to bf16; samkit bf16 =
``samkit.load(precision="bf16")``'s encoder cast); click latency; everything mode on a 1024 px
image (official SamAutomaticMaskGenerator vs samkit MaskGenerator); PerSAM-F fit; peak GPU
memory. Anchor: segment-anything-fast reports 2.78 -> 25 img/s (vit_h) and 12.1 -> 95 img/s
(vit_b) on one A100 with bf16, compile, SDPA and a fused rel-pos kernel.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

Row = tuple[str, str, str, str]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of ``fn`` after one warm-up call."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def parity(device: torch.device, size: int) -> list[Row]:
    from official import twin_models

    from samkit.models import CONFIGS

    cfg = CONFIGS["vit_b"]
    if size != cfg.image_size:
        from dataclasses import replace

        cfg = replace(cfg, image_size=size)
    off, ours = twin_models(cfg, seed=0)
    off, ours = off.to(device).eval(), ours.to(device).eval()
    x = torch.randn(1, 3, size, size, device=device)
    with torch.inference_mode():
        e_off = off.image_encoder(x)
        e_ours = ours.encode(x).embeddings
        pts = (
            torch.tensor([[[size * 0.4, size * 0.6]]], device=device),
            torch.ones(1, 1).to(device),
        )
        sparse, dense = off.prompt_encoder(points=pts, boxes=None, masks=None)
        low_off, iou_off = off.mask_decoder(
            image_embeddings=e_off,
            image_pe=off.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
        low_ours, iou_ours = ours.decode(ours.encode(x), points=(pts[0], pts[1].int()))
    d_emb = (e_off - e_ours).abs().max().item()
    d_low = (low_off - low_ours).abs().max().item()
    d_iou = (iou_off - iou_ours).abs().max().item()
    ok = "yes" if max(d_emb, d_low, d_iou) < 1e-3 else "NO"
    return [
        (
            "parity vit_b (max abs diff)",
            f"emb {d_emb:.1e}",
            f"logits {d_low:.1e}, iou {d_iou:.1e}",
            ok,
        )
    ]


def _embed_times(
    off: torch.nn.Module, ours: torch.nn.Module, size: int, device: torch.device, repeats: int
) -> tuple[float, float]:
    """Seconds per image embedding: official image_encoder vs samkit's encode."""
    x = torch.randn(1, 3, size, size, device=device)
    x_off = x.to(next(off.parameters()).dtype)
    with torch.inference_mode():
        t_off = _time(lambda: off.image_encoder(x_off), device, repeats)
        t_ours = _time(lambda: ours.encode(x), device, repeats)
    return t_off, t_ours


def embedding_speed(device: torch.device, models: list[str], size: int, repeats: int) -> list[Row]:
    from official import twin_models

    from samkit.models import CONFIGS

    rows: list[Row] = []
    for name in models:
        cfg = CONFIGS[name]
        if size != cfg.image_size:
            from dataclasses import replace

            cfg = replace(cfg, image_size=size)
        off, ours = twin_models(cfg, seed=0)
        off, ours = off.to(device).eval(), ours.to(device).eval()
        for precision in ("fp32", "bf16"):
            if precision == "bf16" and device.type == "cpu" and not _cpu_bf16():
                continue
            o, s = off, ours
            if precision == "bf16":
                o = copy.deepcopy(off).to(torch.bfloat16)
                s = copy.deepcopy(ours).set_precision(torch.bfloat16)
            t_off, t_ours = _embed_times(o, s, size, device, repeats)
            rows.append(
                (
                    f"embeddings/s {name} {precision}",
                    f"{1 / t_off:.2f}",
                    f"{1 / t_ours:.2f}",
                    f"{t_off / t_ours:.2f}x",
                )
            )
            del o, s
        del off, ours
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def clicks_and_everything(device: torch.device, size: int, points_per_side: int) -> list[Row]:
    from conftest import synthetic_image
    from official import twin_models
    from segment_anything import SamAutomaticMaskGenerator, SamPredictor

    from samkit import MaskGenerator, Predictor
    from samkit.models import CONFIGS

    cfg = CONFIGS["vit_b"]
    if size != cfg.image_size:
        from dataclasses import replace

        cfg = replace(cfg, image_size=size)
    off, ours = twin_models(cfg, seed=0)
    off, ours = off.to(device).eval(), ours.to(device).eval()
    img = synthetic_image(size * 3 // 4, size, seed=0)
    po, pk = SamPredictor(off), Predictor(ours)
    with torch.inference_mode():
        po.set_image(img)
    pk.set_image(img)
    pt = np.array([[size * 0.5, size * 0.4]])
    with torch.inference_mode():
        t_off = _time(lambda: po.predict(pt, np.array([1])), device, 10)
    t_ours = _time(lambda: pk.predict(pt, [1]), device, 10)
    rows: list[Row] = [
        ("click latency ms", f"{t_off * 1e3:.1f}", f"{t_ours * 1e3:.1f}", f"{t_off / t_ours:.2f}x")
    ]
    opts = dict(points_per_side=points_per_side, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    go = SamAutomaticMaskGenerator(off, **opts)
    gk = MaskGenerator(ours, **opts)
    with torch.inference_mode():
        t0 = time.perf_counter()
        n_off = len(go.generate(img))
        _sync(device)
        t_go = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_ours = len(gk.generate(img))
    _sync(device)
    t_gk = time.perf_counter() - t0
    rows.append(
        (
            f"everything {img.shape[1]}x{img.shape[0]}, {points_per_side}^2 points, s",
            f"{t_go:.2f} ({n_off} masks)",
            f"{t_gk:.2f} ({n_ours} masks)",
            f"{t_go / t_gk:.2f}x",
        )
    )
    return rows


def persam_f(device: torch.device) -> list[Row]:
    from conftest import synthetic_image

    import samkit
    from samkit.models import build_sam

    model = build_sam("tiny").to(device).eval()
    img = synthetic_image(160, 200, seed=3)
    mask = np.zeros(img.shape[:2], bool)
    mask[40:100, 60:140] = True
    t0 = time.perf_counter()
    samkit.PerSAM(model, finetune=True).fit(img, mask)
    _sync(device)
    return [("PerSAM-F fit (tiny model), s", "-", f"{time.perf_counter() - t0:.2f}", "-")]


def _cpu_bf16() -> bool:
    from samkit.runtime import cpu_bf16_flags

    return bool(cpu_bf16_flags())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke test on a CPU")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    from machine import header

    from samkit.runtime import resolve_device

    device = resolve_device(args.device)
    size = 256 if args.quick else 1024
    repeats = 1 if args.quick else args.repeats
    models = ["vit_b"] if args.quick else ["vit_b", "vit_h"]
    print(header(measure=device.type == "cpu"))
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}")
        torch.cuda.reset_peak_memory_stats(device)
    rows: list[Row] = []
    t0 = time.perf_counter()
    for part in (
        lambda: parity(device, size),
        lambda: embedding_speed(device, models, size, repeats),
        lambda: clicks_and_everything(device, size, 8 if args.quick else 32),
        lambda: persam_f(device),
    ):
        try:
            rows += part()
        except Exception as e:  # a failing part is reported, the rest still runs
            rows.append((f"FAILED: {type(e).__name__}", str(e)[:60], "-", "-"))
        print(f"... {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        rows.append(("peak GPU memory GiB", "-", f"{peak:.2f}", "-"))
    print("\n| measure | official | samkit | samkit / official |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s on {device}")


if __name__ == "__main__":
    main()
