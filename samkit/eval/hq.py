"""``samkit eval hq DATA``: HQ-SAM's evaluation protocol, mIoU and mBIoU with ground-truth boxes.

As the official harness (HQ-SAM ``train/train.py`` evaluate, ``misc.py``): the image is resized to
the model's input size without keeping the aspect ratio, the prompt is the tight box of the
resized ground truth (> 0.5; x1, y1 are pixel indices), one mask is decoded
(``multimask_output=False``), its low-res logits are upsampled bilinearly straight to the original
resolution and thresholded at 0; IoU and boundary IoU (dilation ratio 0.02) are taken against the
original ground truth and averaged over masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from samkit.eval.metrics import mask_scores


@dataclass
class HQEvalResult:
    """Mean IoU and boundary IoU over all masks; per-mask values in ``ious`` / ``bious``."""

    n_images: int
    n_masks: int
    miou: float
    mbiou: float
    ious: list[float] = field(default_factory=list, repr=False)
    bious: list[float] = field(default_factory=list, repr=False)

    def summary(self) -> dict:
        return {
            "n_images": self.n_images,
            "n_masks": self.n_masks,
            "miou": round(self.miou, 4),
            "mbiou": round(self.mbiou, 4),
        }


def gt_boxes(gts: np.ndarray) -> np.ndarray:
    """Tight XYXY boxes of M x H x W bool masks, x1/y1 the last pixel index -> M x 4 float32."""
    out = []
    for m in gts:
        ys, xs = np.nonzero(m)
        out.append([xs.min(), ys.min(), xs.max(), ys.max()])
    return np.array(out, np.float32).reshape(-1, 4)


@torch.no_grad()
def predict_boxes(
    model, image: np.ndarray, masks: np.ndarray, hq_token_only: bool = False
) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """GT-box predictions for one image: image H x W x 3 uint8, masks M x H x W bool ->
    (M x H x W bool predictions, the M indices of masks that survived the resize)."""
    s = model.image_size
    h, w = image.shape[:2]
    img = cv2.resize(image, (s, s), interpolation=cv2.INTER_LINEAR)
    gt_r = np.stack(
        [cv2.resize(m.astype(np.float32), (s, s), interpolation=cv2.INTER_LINEAR) for m in masks]
    )
    keep = np.nonzero((gt_r > 0.5).any((1, 2)))[0]
    if len(keep) == 0:
        return np.zeros((0, h, w), bool), keep
    boxes = torch.from_numpy(gt_boxes(gt_r[keep] > 0.5))
    x = model.preprocess(torch.from_numpy(img).permute(2, 0, 1)[None].float())
    feats = model.encode(x)
    kw = {"hq_token_only": hq_token_only} if model.is_hq else {}
    logits, _ = model.decode(feats, boxes=boxes, multimask_output=False, **kw)
    up = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    return (up[:, 0] > 0).numpy(), keep


def evaluate_hq(
    model, dataset, limit: int | None = None, hq_token_only: bool = False, progress: bool = False
) -> HQEvalResult:  # type: ignore[no-untyped-def]
    """The protocol over the first ``limit`` items of a dataset of (image, M x H x W masks)."""
    from tqdm import tqdm

    n = len(dataset) if limit is None else min(limit, len(dataset))
    ious, bious = [], []
    for i in tqdm(range(n), disable=not progress, desc="eval hq"):
        image, masks = dataset[i]
        masks = np.asarray(masks, bool)
        if len(masks) == 0:
            continue
        preds, keep = predict_boxes(model, image, masks, hq_token_only)
        for p, j in zip(preds, keep):
            a, b = mask_scores(p, masks[j])
            ious.append(a)
            bious.append(b)
    if not ious:
        raise ValueError("no masks to evaluate")
    return HQEvalResult(n, len(ious), float(np.mean(ious)), float(np.mean(bious)), ious, bious)


def plot_examples(models: list[tuple[str, object]], dataset, path: str, n: int = 6, **kw) -> None:  # type: ignore[no-untyped-def]
    """A PNG grid: per row one image, its ground truth (all masks) and each model's GT-box
    predictions; kw go to ``predict_boxes`` (hq_token_only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 2 + len(models)
    fig, axes = plt.subplots(n, cols, figsize=(1.8 * cols, 1.8 * n), dpi=110, squeeze=False)
    for r in range(n):
        image, masks = dataset[r]
        masks = np.asarray(masks, bool)
        panels = [("image", image), ("ground truth", masks.any(0))]
        for name, m in models:
            preds, _ = predict_boxes(m, image, masks, kw.get("hq_token_only", False) and m.is_hq)
            panels.append((name, preds.any(0)))
        for c, (title, arr) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(arr, cmap=None if arr.ndim == 3 else "gray", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
