"""Data-engine throughput: images/min of `samkit annotate` (everything mode), local processes
vs Ray actors, on the same synthetic collection, each run from scratch into a fresh folder.

    .venv/bin/python benchmarks/bench_engine.py --images 24 --model samkit-tiny

Thresholds default to 0.5 / 0.8 (not the official 0.88 / 0.95) so that the small model keeps
masks on synthetic images and the timing includes their decoding and encoding.

Prints one row per engine/workers: wall time of the whole call (start-up and model loading
included) and the images/min over it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import synthetic_image  # noqa: E402

from samkit.engine import annotate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--size", default="240x320", help="HxW of the synthetic images")
    ap.add_argument("--model", default="samkit-tiny")
    ap.add_argument("--points-per-side", type=int, default=16)
    ap.add_argument("--pred-iou-thresh", type=float, default=0.5)
    ap.add_argument("--stability-score-thresh", type=float, default=0.8)
    ap.add_argument("--runs", default="local:1,local:2,ray:2", help="engine:workers,...")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for i in range(args.images):
            Image.fromarray(synthetic_image(h, w, seed=i)).save(src / f"{i:04d}.png")
        print(
            f"{args.images} images {w}x{h}, model {args.model}, points_per_side "
            f"{args.points_per_side}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
        )
        print("| engine | workers | wall s | images/min | masks |\n|---|---|---|---|---|")
        for k, run in enumerate(args.runs.split(",")):
            engine, workers = run.split(":")
            t0 = time.perf_counter()
            s = annotate(
                src,
                Path(tmp) / f"out{k}",
                model=args.model,
                engine=engine,
                workers=int(workers),
                options={
                    "points_per_side": args.points_per_side,
                    "pred_iou_thresh": args.pred_iou_thresh,
                    "stability_score_thresh": args.stability_score_thresh,
                },
                progress=False,
            )
            wall = time.perf_counter() - t0
            assert s.annotated == args.images, s
            print(
                f"| {engine} | {workers} | {wall:.1f} | {60 * args.images / wall:.1f} "
                f"| {s.masks} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
