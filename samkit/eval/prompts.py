"""The interactive evaluation protocol of the SAM paper (after RITM): the first click at the
point of the object farthest from its boundary (maximum of the distance transform), each later
click at the maximum of the distance transform of the largest error, positive for a false
negative and negative for a false positive; the previous logits are fed back as the mask prompt.

``evaluate`` runs it over a dataset and also measures a ground-truth box prompt."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from samkit.eval.metrics import iou, ious
from samkit.masks import mask_to_box


def _dt(region: np.ndarray) -> np.ndarray:
    """Distance to the region's boundary, with the image border counted as boundary."""
    padded = np.pad(region.astype(np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]


def first_click(gt: np.ndarray) -> tuple[int, int]:
    """(x, y) of the object pixel farthest from its boundary."""
    d = _dt(gt)
    y, x = np.unravel_index(int(np.argmax(d)), d.shape)
    return int(x), int(y)


def next_click(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int, int]:
    """(x, y, label) of the next corrective click: the deepest point of the false-negative or
    false-positive region, whichever is deeper; label 1 adds (false negative), 0 removes."""
    fn = gt & ~pred
    fp = pred & ~gt
    d_fn, d_fp = _dt(fn), _dt(fp)
    positive = d_fn.max() >= d_fp.max()
    d = d_fn if positive else d_fp
    y, x = np.unravel_index(int(np.argmax(d)), d.shape)
    return int(x), int(y), int(positive)


@dataclass
class MaskResult:
    """IoUs for one ground-truth mask: clicks[i] after i+1 clicks (the mask the model ranks
    highest on click 1), best_of_3 for click 1 (oracle over the three outputs), box."""

    clicks: list[float]
    best_of_3: float
    box: float


def evaluate_mask(predictor, gt: np.ndarray, n_clicks: int = 5) -> MaskResult:
    """Run the click protocol and the box prompt on one mask of the predictor's current image."""
    x, y = first_click(gt)
    pts, lbl = [[x, y]], [1]
    res = predictor.predict(points=np.array(pts, np.float32), labels=np.array(lbl), multimask=True)
    k = int(np.argmax(res.scores))
    best3 = float(ious(res.masks, gt).max())
    pred, logits = res.masks[k], res.logits[k : k + 1]
    clicks = [iou(pred, gt)]
    for _ in range(n_clicks - 1):
        x, y, label = next_click(pred, gt)
        pts.append([x, y])
        lbl.append(label)
        res = predictor.predict(
            points=np.array(pts, np.float32),
            labels=np.array(lbl),
            mask_input=logits,
            multimask=False,
        )
        pred, logits = res.masks[0], res.logits[:1]
        clicks.append(iou(pred, gt))
    res = predictor.predict(box=mask_to_box(gt), multimask=False)
    return MaskResult(clicks, best3, iou(res.masks[0], gt))


@dataclass
class EvalResult:
    """Mean IoUs over all masks: miou_clicks[i] after i+1 clicks."""

    n_images: int
    n_masks: int
    miou_clicks: list[float]
    miou_1click: float
    miou_1click_best_of_3: float
    miou_box: float
    per_mask: list[MaskResult] = field(default_factory=list, repr=False)

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("per_mask")
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()} | {
            "miou_clicks": [round(v, 4) for v in self.miou_clicks]
        }


def evaluate(
    model,
    dataset,
    n_clicks: int = 5,
    limit: int | None = None,
    min_area: int = 0,
    progress: bool = False,
) -> EvalResult:
    """Click protocol + box over the first ``limit`` items of a dataset of (image, masks)."""
    from tqdm import tqdm

    from samkit.predictor import Predictor

    pred = Predictor(model)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    results: list[MaskResult] = []
    for i in tqdm(range(n), disable=not progress, desc="eval"):
        image, masks = dataset[i]
        masks = [m for m in masks if m.sum() > max(min_area, 0)]
        if not masks:
            continue
        pred.set_image(image)
        results += [evaluate_mask(pred, m, n_clicks) for m in masks]
    if not results:
        raise ValueError("no masks to evaluate")
    per_click = np.array([r.clicks for r in results]).mean(0)
    return EvalResult(
        n,
        len(results),
        [float(v) for v in per_click],
        float(per_click[0]),
        float(np.mean([r.best_of_3 for r in results])),
        float(np.mean([r.box for r in results])),
        results,
    )


def plot_clicks(results: dict[str, EvalResult], path: str) -> None:
    """mIoU against the number of clicks, one line per named result -> PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for name, r in results.items():
        xs = np.arange(1, len(r.miou_clicks) + 1)
        ax.plot(xs, r.miou_clicks, marker="o", label=f"{name} (box {r.miou_box:.3f})")
    ax.set_xlabel("clicks")
    ax.set_ylabel("mIoU")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"interactive segmentation, {next(iter(results.values())).n_masks} masks")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
