"""Light HQ-SAM (random weights) everything mode, fast vs fast=False, same process, interleaved.

OMP_NUM_THREADS=1 python benchmarks/bench_hq_everything.py PHOTO ROUNDS default|low
"""

import sys
import time

import torch

from samkit import MaskGenerator, Predictor
from samkit.image_io import load_image
from samkit.models import build_sam

torch.set_num_threads(1)
path, rounds, setting = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)
model = build_sam("hq_vit_tiny").eval()
img = load_image(path)[:1024, :1024].copy()
opts = dict(points_per_side=16, output_mode="coco_rle")
if setting == "low":
    opts.update(pred_iou_thresh=0.05, stability_score_thresh=0.4)
    with torch.no_grad():  # as benchmarks/bench_automatic.py: logits x10 so masks are kept
        for mlp in [*model.mask_decoder.output_hypernetworks_mlps, model.mask_decoder.hf_mlp]:
            mlp.layers[-1].weight.mul_(10.0)
            mlp.layers[-1].bias.mul_(10.0)
t = time.perf_counter()
emb = Predictor(model).set_image(img)
enc = time.perf_counter() - t
gens = {"fast": MaskGenerator(model, **opts), "reference": MaskGenerator(model, fast=False, **opts)}
times = {k: [] for k in gens}
out = {}
for r in range(rounds):
    for k, g in gens.items():
        t = time.perf_counter()
        out[k] = g.generate(img, embedding=emb)
        times[k].append(time.perf_counter() - t)
        print(r, k, f"{times[k][-1]:.2f}s", len(out[k]), flush=True)
a, b = out["fast"], out["reference"]
same = len(a) == len(b) and all(x["segmentation"] == y["segmentation"] for x, y in zip(a, b))
print("masks identical:", same, len(a))
if a and len(a) == len(b):
    print("max |iou diff|", max(abs(x["predicted_iou"] - y["predicted_iou"]) for x, y in zip(a, b)))
    print(
        "max |stab diff|",
        max(abs(x["stability_score"] - y["stability_score"]) for x, y in zip(a, b)),
    )
f, rf = min(times["fast"]), min(times["reference"])
print(
    f"image {img.shape}, encoder {enc:.2f}s; decode+postprocess best of {rounds}: fast {f:.2f}s, "
    f"reference {rf:.2f}s, ratio {rf / f:.1f}x; with the encoder {(rf + enc) / (f + enc):.1f}x"
)
