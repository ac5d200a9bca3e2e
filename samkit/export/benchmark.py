"""How an int8 copy compares with its fp32 export: encoder and decoder time, and mask agreement
(IoU of the masks the two give for the same prompts). `samkit export-onnx --int8` prints it."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from samkit.export.onnx import OnnxPredictor


@dataclass
class Int8Report:
    encoder_ms: tuple[float, float]  # fp32, int8: median per image
    decoder_ms: tuple[float, float]  # fp32, int8: median per prompt
    mask_iou: float  # mean IoU between the fp32 and the int8 masks
    mask_iou_encoder_only: float  # the same with the int8 encoder and the fp32 decoder
    size_mb: tuple[float, float]  # encoder + decoder files, fp32 and int8

    def lines(self) -> list[str]:
        e, d, s = self.encoder_ms, self.decoder_ms, self.size_mb
        return [
            f"{'':<10}{'fp32':>10}{'int8':>10}{'speed-up':>10}",
            f"{'encoder':<10}{e[0]:>8.1f}ms{e[1]:>8.1f}ms{e[0] / e[1]:>9.2f}x",
            f"{'decoder':<10}{d[0]:>8.2f}ms{d[1]:>8.2f}ms{d[0] / d[1]:>9.2f}x",
            f"{'size':<10}{s[0]:>8.1f}MB{s[1]:>8.1f}MB",
            f"mask agreement (mean IoU, int8 vs fp32): {self.mask_iou:.4f}; int8 encoder "
            f"with the fp32 decoder: {self.mask_iou_encoder_only:.4f}",
        ]


def mask_agreement(a: OnnxPredictor, b: OnnxPredictor, prompts: Sequence[dict[str, Any]]) -> float:
    """Mean IoU between the best-scoring masks of two predictors (images already set)."""
    ious = []
    for p in prompts:
        ra, rb = a.predict(**p), b.predict(**p)
        ma = ra.masks[int(np.argmax(ra.scores))]
        mb = rb.masks[int(np.argmax(ra.scores))]
        union = np.logical_or(ma, mb).sum()
        ious.append(1.0 if union == 0 else np.logical_and(ma, mb).sum() / union)
    return float(np.mean(ious))


def grid_prompts(h: int, w: int, n: int = 4) -> list[dict[str, Any]]:
    """n x n single-click prompts on a regular grid of an H x W image."""
    ys = (np.arange(n) + 0.5) * h / n
    xs = (np.arange(n) + 0.5) * w / n
    return [dict(points=[[x, y]], labels=[1]) for y in ys for x in xs]


def compare_int8(
    onnx_dir: str | os.PathLike,
    images: Sequence[Any],
    threads: int | None = None,
    repeats: int = 3,
) -> Int8Report:
    """Time the fp32 and int8 graphs of one export folder on ``images`` and measure how far
    the int8 masks agree with the fp32 ones (a 4 x 4 grid of clicks per image)."""
    from pathlib import Path

    from samkit.image_io import load_image

    d = Path(onnx_dir)
    preds = OnnxPredictor(d, threads), OnnxPredictor(d, threads, int8=True)
    mixed = OnnxPredictor(d, threads, int8="encoder")
    enc: list[list[float]] = [[], []]
    dec: list[list[float]] = [[], []]
    ious, ious_mixed = [], []
    for image in images:
        img = load_image(image)
        prompts = grid_prompts(*img.shape[:2])
        for k, pred in enumerate(preds):
            for _ in range(repeats):
                t = time.perf_counter()
                pred.set_image(img)
                enc[k].append(time.perf_counter() - t)
            for p in prompts:
                t = time.perf_counter()
                pred.predict(**p)
                dec[k].append(time.perf_counter() - t)
        ious.append(mask_agreement(preds[0], preds[1], prompts))
        mixed.set_image(img)
        ious_mixed.append(mask_agreement(preds[0], mixed, prompts))
    sizes = [
        sum((d / f"{n}{s}").stat().st_size for n in ("encoder", "decoder")) / 1e6
        for s in (".onnx", ".int8.onnx")
    ]
    return Int8Report(
        (1e3 * float(np.median(enc[0])), 1e3 * float(np.median(enc[1]))),
        (1e3 * float(np.median(dec[0])), 1e3 * float(np.median(dec[1]))),
        float(np.mean(ious)),
        float(np.mean(ious_mixed)),
        (sizes[0], sizes[1]),
    )
