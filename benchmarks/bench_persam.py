"""PerSAM-F fitting time: samkit's cached-logits fit vs the official loop (decoder + full-resolution
upscaling + autograd step at every iteration), in the same run on the same reference.

    .venv/bin/python benchmarks/bench_persam.py [--model PATH] [--ref IMG --ref-mask MASK]
        [--official-iters 20] [--threads N]

The official loop is timed for --official-iters iterations and extrapolated to 1000.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import samkit
from samkit.persam.finetune import combine, dice_loss, fit_scale_weights, focal_loss
from samkit.persam.persam import PerSAM, read_reference_mask
from samkit.persam.prior import select_points

FIX = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "persam"


def official_loop(per: PerSAM, emb, fg: torch.Tensor, iters: int) -> float:
    """Seconds per iteration of persam_f.py's training loop (decoder re-run every time)."""
    points, labels = select_points(per._similarity(emb), negative=False)
    fg = fg.flatten()[None]
    weights = torch.nn.Parameter(torch.ones(2, 1) / 3)
    opt = torch.optim.AdamW([weights], lr=1e-3, eps=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 1000)
    t0 = time.perf_counter()
    for _ in range(iters):
        high = per._decode(emb, points, labels, None, None, multimask=True).high.flatten(1)
        z = (high * combine(weights)).sum(0).unsqueeze(0)
        loss = dice_loss(z, fg) + focal_loss(z, fg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return (time.perf_counter() - t0) / iters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(FIX / "model.safetensors"))
    ap.add_argument("--ref", default=str(FIX / "data/Images/checker_ell/00.jpg"))
    ap.add_argument("--ref-mask", default=str(FIX / "data/Annotations/checker_ell/00.png"))
    ap.add_argument("--official-iters", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = samkit.load(args.model)

    t0 = time.perf_counter()
    per = PerSAM(model, finetune=True).fit(args.ref, args.ref_mask)
    total = time.perf_counter() - t0

    emb = per._predictor.embedding
    mask = read_reference_mask(args.ref_mask, emb.original_size)
    fg = torch.as_tensor(mask[..., 0] > 0, dtype=torch.float32)
    out = per._decode(emb, per.train_call.points, per.train_call.labels, None, None, True)
    t0 = time.perf_counter()
    fit_scale_weights(out.high.clone(), fg)
    weights_only = time.perf_counter() - t0

    per_iter = official_loop(per, emb, fg, args.official_iters)
    official = per_iter * 1000
    h, w = emb.original_size
    threads = torch.get_num_threads()
    print(f"PerSAM-F fit, reference {w}x{h}, 1000 iterations, torch threads {threads}")
    print(f"{'method':<48}{'seconds':>10}")
    print(f"{'samkit fit (encode + 1 decoder pass + 1000 steps)':<48}{total:>10.2f}")
    print(f"{'samkit 1000 steps on cached logits':<48}{weights_only:>10.2f}")
    print(f"{'official loop, 1000 decoder passes (extrapolated)':<48}{official:>10.2f}")
    print(f"speed-up of the fit: {official / total:.1f}x")


if __name__ == "__main__":
    main()
