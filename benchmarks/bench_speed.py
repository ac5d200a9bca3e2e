"""Side-by-side speed of the official segment-anything and samkit on the same random weights.

    .venv/bin/python benchmarks/bench_speed.py --model vit_b --repeats 3 [--bf16] [--write-docs]

Times (alternating, medians): image embedding, one click (point; box; point + mask input),
64 prompts decoded at once; and peak RSS of a separate process per implementation for the
embedding. Prints a markdown table; --write-docs writes docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def _timeit(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def image(h: int = 768, w: int = 1024) -> np.ndarray:
    from conftest import synthetic_image

    return synthetic_image(h, w, seed=0)


def run(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    from official import twin_models
    from segment_anything import SamPredictor

    from samkit.models import CONFIGS
    from samkit.predictor import Predictor

    torch.set_num_threads(args.threads)
    off, ours = twin_models(CONFIGS[args.model], seed=0)
    img = image()
    po, pk = SamPredictor(off), Predictor(ours)
    rows = []

    def off_embed():  # type: ignore[no-untyped-def]
        with torch.inference_mode():
            po.set_image(img)

    def our_embed():  # type: ignore[no-untyped-def]
        pk.set_image(img)

    t_off, t_ours = [], []
    for _ in range(args.repeats):  # alternate so drift affects both
        t_off.append(_timeit(off_embed, 1))
        t_ours.append(_timeit(our_embed, 1))
    rows.append(("image embedding", statistics.median(t_off), statistics.median(t_ours)))
    if args.bf16:
        pb = Predictor(copy.deepcopy(ours).set_precision(torch.bfloat16))
        t_bf = [_timeit(lambda: pb.set_image(img), 1) for _ in range(args.repeats)]
        rows.append(
            ("image embedding, samkit bf16", statistics.median(t_off), statistics.median(t_bf))
        )
        agree = []
        for pt in ([[500, 300]], [[200, 600]], [[900, 100]]):
            a, b = pk.predict(pt, [1]), pb.predict(pt, [1])
            inter = np.logical_and(a.masks, b.masks).sum((1, 2))
            union = np.logical_or(a.masks, b.masks).sum((1, 2))
            agree += list(inter / np.maximum(union, 1))
        print(f"bf16 vs fp32 mask IoU: min {min(agree):.4f}, mean {np.mean(agree):.4f}")

    pt, lb = np.array([[500, 300]]), np.array([1])
    box = np.array([200, 150, 700, 600])
    first = pk.predict(pt, lb)
    mi = first.logits[[int(first.scores.argmax())]]
    cases = {
        "click (1 point)": (dict(point_coords=pt, point_labels=lb), dict(points=pt, labels=lb)),
        "click (box)": (dict(box=box), dict(box=box)),
        "click (point + mask input)": (
            dict(point_coords=pt, point_labels=lb, mask_input=mi),
            dict(points=pt, labels=lb, mask_input=mi),
        ),
    }
    reps = args.repeats * 5
    for name, (ko, kk) in cases.items():
        a = _timeit(lambda: po.predict(**ko), reps)  # noqa: B023
        b = _timeit(lambda: pk.predict(**kk), reps)  # noqa: B023
        rows.append((name, a, b))

    rng = np.random.default_rng(0)
    pts = rng.uniform([0, 0], [1024, 768], (64, 1, 2))
    lbls = np.ones((64, 1), int)
    tp = po.transform.apply_coords_torch(torch.as_tensor(pts, dtype=torch.float), (768, 1024))
    a = _timeit(lambda: po.predict_torch(tp, torch.as_tensor(lbls)), args.repeats)
    b = _timeit(lambda: pk.predict_batch(pts, lbls), args.repeats)
    rows.append(("64 prompts, one call", a, b))
    if args.onnx:
        import tempfile

        from samkit.export.onnx import OnnxPredictor, export_onnx

        with tempfile.TemporaryDirectory() as d:
            export_onnx(ours, d)  # not timed
            op = OnnxPredictor(d, threads=args.threads)
            t_ort = [_timeit(lambda: op.set_image(img), 1) for _ in range(args.repeats)]
            rows.append(
                ("image embedding, samkit onnxruntime", rows[0][1], statistics.median(t_ort))
            )
            a = _timeit(lambda: po.predict(point_coords=pt, point_labels=lb), reps)
            b = _timeit(lambda: op.predict(pt, lb), reps)
            rows.append(("click (1 point), samkit onnxruntime", a, b))
            same = (op.predict(pt, lb).masks == pk.predict(pt, lb).masks).mean()
            print(f"onnxruntime vs PyTorch masks: {same:.6f} of pixels equal")
    return rows


def peak_rss(impl: str, model: str, threads: int) -> float:
    """Peak RSS (MB) of a fresh process that builds the model and embeds one image."""
    code = f"""
import resource, sys, torch
sys.path.insert(0, {str(ROOT / "tests")!r}); sys.path.insert(0, {str(ROOT / "benchmarks")!r})
torch.set_num_threads({threads})
from bench_speed import image
from samkit.models import CONFIGS
img = image()
if {impl!r} == "official":
    from official import build_official
    from segment_anything import SamPredictor
    p = SamPredictor(build_official(CONFIGS[{model!r}]))
    with torch.inference_mode():
        p.set_image(img)
else:
    from samkit.models import build_sam
    from samkit.predictor import Predictor
    Predictor(build_sam({model!r})).set_image(img)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="vit_b", choices=["vit_b", "vit_l", "vit_h"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--bf16", action="store_true", help="also time the bf16 encoder")
    ap.add_argument("--memory-model", default=None, help="model for the RSS rows (default --model)")
    ap.add_argument("--onnx", action="store_true", help="also time the onnxruntime backend")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    rows = run(args)
    if not args.no_memory:
        mm = args.memory_model or args.model
        mo = peak_rss("official", mm, args.threads)
        mk = peak_rss("samkit", mm, args.threads)
        rows.append((f"peak RSS, {mm} embedding (MB)", mo, mk))
    lines = [
        f"| {args.model}, fp32, {args.threads} threads | official | samkit | speed-up |",
        "|---|---|---|---|",
    ]
    for name, a, b in rows:
        if "RSS" in name:
            lines.append(f"| {name} | {a:.0f} | {b:.0f} | {a / b:.2f}x less |")
        else:
            lines.append(f"| {name} | {a * 1000:.1f} ms | {b * 1000:.1f} ms | {a / b:.2f}x |")
    table = "\n".join(lines)
    print(table)
    cmd = "python benchmarks/bench_speed.py " + " ".join(sys.argv[1:])
    print(json.dumps({"cpu": platform.processor(), "torch": torch.__version__}))
    if args.write_docs:
        doc = ROOT / "docs" / "benchmarks.md"
        doc.parent.mkdir(exist_ok=True)
        doc.write_text(
            "# Speed: samkit vs the official segment-anything\n\n"
            f"Command: `{cmd}` (random weights, a 1024x768 image, torch {torch.__version__}, "
            f"{platform.machine()}, shared 2-core machine).\n\n{table}\n"
        )


if __name__ == "__main__":
    main()
