"""Segment everything: samkit.MaskGenerator vs segment_anything.SamAutomaticMaskGenerator on the
same random weights and image, side by side. Each implementation runs in its own process (so
peak RSS is its own) with one thread; the parent checks the masks match and prints a table.

    .venv/bin/python benchmarks/bench_automatic.py --points-per-side 12
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT.parent / "shared/data/perseg-examples/Images/colorful_sneaker/00.jpg"

# Random weights give predicted IoUs around 0 and logits around +-2; the "low" setting lowers
# the filters (and scales the mask logits x10) so that hundreds of masks are kept and compared.
SETTINGS = {
    "default": dict(pred_iou_thresh=0.88, stability_score_thresh=0.95, box_nms_thresh=0.7),
    "low": dict(pred_iou_thresh=0.05, stability_score_thresh=0.4, box_nms_thresh=1.0),
}


def make_models(image_size: int, arch: str):  # type: ignore[no-untyped-def]
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from official import twin_models

    from samkit.models import CONFIGS, SamConfig

    if arch == "small":
        cfg = SamConfig(
            encoder_embed_dim=64,
            encoder_depth=2,
            encoder_num_heads=2,
            encoder_global_attn_indexes=(1,),
            image_size=image_size,
        )
    else:
        cfg = CONFIGS[arch]
    off, ours = twin_models(cfg, 0)
    with torch.no_grad():
        for m in (off, ours):
            for mlp in m.mask_decoder.output_hypernetworks_mlps:
                mlp.layers[-1].weight.mul_(10.0)
                mlp.layers[-1].bias.mul_(10.0)
    return off, ours


def load_photo(path: Path, height: int, width: int):  # type: ignore[no-untyped-def]
    from samkit.image_io import load_image

    img = load_image(path)
    return img[:height, :width].copy()


def child(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    off, ours = make_models(args.image_size, args.arch)
    img = load_photo(Path(args.image), args.height, args.width)
    opts = dict(
        points_per_side=args.points_per_side,
        points_per_batch=64,
        output_mode="coco_rle",
        **SETTINGS[args.setting],
    )
    if args.impl == "official":
        from segment_anything import SamAutomaticMaskGenerator, SamPredictor

        t = time.perf_counter()
        SamPredictor(off).set_image(img)
        enc = time.perf_counter() - t
        gen = SamAutomaticMaskGenerator(off, **opts)
    else:
        from samkit import MaskGenerator, Predictor

        t = time.perf_counter()
        Predictor(ours).set_image(img)
        enc = time.perf_counter() - t
        gen = MaskGenerator(ours, **opts)
    t = time.perf_counter()
    anns = gen.generate(img)
    total = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {
        "total": total,
        "encoder": enc,
        "peak_mb": peak,
        "anns": [
            {k: a[k] for k in ("segmentation", "area", "bbox", "predicted_iou", "stability_score")}
            for a in anns
        ],
        "shape": list(np.shape(img)),
    }
    Path(args.out).write_text(json.dumps(out))


def compare(a: list[dict], b: list[dict]) -> tuple[float, int]:
    """(worst matched mask IoU, count of records whose masks are bit-identical)."""
    from samkit.masks import decode_rle

    worst, same = 1.0, 0
    for x, y in zip(a, b):
        if x["segmentation"] == y["segmentation"]:
            same += 1
            continue
        mx, my = decode_rle(x["segmentation"]), decode_rle(y["segmentation"])
        worst = min(worst, float((mx & my).sum() / max(1, (mx | my).sum())))
    return worst, same


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--image", default=str(PHOTO))
    p.add_argument("--height", type=int, default=1365)
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--arch", default="small", help="small (parity config) or vit_b / vit_l / ...")
    p.add_argument("--image-size", type=int, default=1024)
    p.add_argument("--points-per-side", type=int, default=12)
    p.add_argument("--settings", default="default,low")
    p.add_argument("--impl", help=argparse.SUPPRESS)
    p.add_argument("--setting", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.impl:
        child(args)
        return
    rows = []
    for setting in args.settings.split(","):
        res = {}
        for impl in ("official", "samkit"):
            out = f"/tmp/bench_automatic_{os.getpid()}_{impl}.json"
            cmd = [sys.executable, __file__, *sys.argv[1:], "--impl", impl]
            cmd += ["--setting", setting, "--out", out]
            subprocess.run(cmd, check=True, cwd=ROOT)
            res[impl] = json.loads(Path(out).read_text())
            os.remove(out)
        o, s = res["official"], res["samkit"]
        worst, same = compare(o["anns"], s["anns"])
        post_o, post_s = o["total"] - o["encoder"], s["total"] - s["encoder"]
        rows.append((setting, o, s, post_o, post_s, worst, same, len(o["anns"]), len(s["anns"])))
    h, w = rows[0][1]["shape"][:2]
    print(
        f"\nimage {w}x{h}, arch {args.arch} @ {args.image_size}, {args.points_per_side}^2 points,"
    )
    print("1 thread each, separate processes; post-encoder = total - one encoder pass\n")
    print(
        "| setting | masks off/samkit | bit-identical | worst IoU | total off / samkit (s) "
        "| post-encoder off / samkit (s) | speed-up total / post | peak RSS off / samkit (MB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for setting, o, s, po, ps, worst, same, no, ns in rows:
        print(
            f"| {setting} | {no} / {ns} | {same} | {worst:.4f} | {o['total']:.1f} / "
            f"{s['total']:.1f} | {po:.1f} / {ps:.1f} | {o['total'] / s['total']:.1f}x / "
            f"{po / ps:.1f}x | {o['peak_mb']:.0f} / {s['peak_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
