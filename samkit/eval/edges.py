"""Edge detection evaluation, the BSDS500 protocol: ODS, OIS, AP and R50.

Each prediction (an 8-bit edge-strength PNG, value / 255) is thresholded at K levels (99 by
default, ``linspace(1/(K+1), 1 - 1/(K+1), K)``), thinned, and matched one-to-one to every
annotator's boundary map with a tolerance of 0.0075 of the image diagonal. Boundary matching,
thinning and the ODS interpolation are pyEdgeEval's (the Cython port of the BSDS benchmark's
``correspondPixels``; install the ``edges`` extra); this module pairs files and adds up counts:

- precision counts a predicted pixel matched to any annotator; recall counts every annotator's
  pixels (summed over annotators);
- ODS: the best F over one threshold for the whole set (interpolated between thresholds);
- OIS: F of the counts summed at each image's own best threshold;
- AP: pyEdgeEval's average precision (max precision at recall >= r, r = 0, .01, ..., .99,
  divided by 101); AUC: the area under the interpolated PR curve (the edges toolbox's "AP");
- R50: the recall where precision reaches 50% on the set's PR curve (linear interpolation).

Ground truth: a folder of BSDS500 ``.mat`` files (``groundTruth`` cells, several annotators'
``Boundaries``) or of PNGs (nonzero = boundary, one annotator), matched to predictions by stem.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from samkit.errors import ConfigError, ImageError

MAX_DIST = 0.0075  # the BSDS matching tolerance, a fraction of the image diagonal
N_THRESHOLDS = 99  # the BSDS benchmark's


@dataclass
class EdgeScores:
    """The set's scores (metric names as the literature writes them) and per-image counts."""

    ODS: float
    OIS: float
    AP: float
    AUC: float
    R50: float
    ODS_threshold: float
    ODS_precision: float
    ODS_recall: float
    n_images: int

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def thresholds(n: int = N_THRESHOLDS) -> np.ndarray:
    """The benchmark's n thresholds in (0, 1)."""
    return np.linspace(1.0 / (n + 1), 1.0 - 1.0 / (n + 1), n)


def load_ground_truth(path: str | Path) -> list[np.ndarray]:
    """A BSDS500 ``.mat`` (every annotator's ``Boundaries``) or a PNG (nonzero = boundary) ->
    a list of H x W bool boundary maps."""
    path = Path(path)
    if path.suffix.lower() == ".mat":
        from scipy.io import loadmat

        try:
            cells = loadmat(str(path))["groundTruth"]
            return [
                np.asarray(cells[0, i]["Boundaries"][0, 0], bool) for i in range(cells.shape[1])
            ]
        except (KeyError, IndexError, ValueError, TypeError, OSError) as e:
            raise ConfigError(
                f"{path} is not a BSDS500 ground-truth file ({e}); expected a 'groundTruth' cell "
                "array of structs with 'Boundaries'"
            ) from None
    return [_read_png(path) > 0]


def load_prediction(path: str | Path) -> np.ndarray:
    """An 8- or 16-bit grayscale edge-strength PNG -> H x W float64 in [0, 1]."""
    a = _read_png(path)
    if a.dtype == np.uint8:
        return a / 255.0
    if a.dtype == np.uint16:
        return a / 65535.0
    raise ImageError(f"{path}: expected an 8- or 16-bit grayscale edge map, got {a.dtype}")


def _read_png(path: str | Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            a = np.asarray(im)
    except OSError as e:
        raise ImageError(f"cannot read {path}: {e}") from None
    if a.ndim == 3:  # an RGB(A) save of a grayscale map
        a = a[..., 0]
    return a


def pair_files(pred_dir: str | Path, gt_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """(stem, prediction PNG, ground truth) for every ground-truth file; every one needs a
    prediction ``PRED_DIR/<stem>.png``."""
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for d, what in ((pred_dir, "prediction"), (gt_dir, "ground-truth")):
        if not d.is_dir():
            raise ConfigError(f"the {what} folder {d} does not exist")
    gts = sorted(p for p in gt_dir.iterdir() if p.suffix.lower() in (".mat", ".png"))
    if not gts:
        raise ConfigError(f"no ground truth (.mat or .png) in {gt_dir}")
    pairs, missing = [], []
    for g in gts:
        p = pred_dir / f"{g.stem}.png"
        if p.exists():
            pairs.append((g.stem, p, g))
        else:
            missing.append(g.stem)
    if missing:
        raise ConfigError(
            f"{len(missing)} of {len(gts)} ground-truth images have no prediction in {pred_dir} "
            f"(first: {missing[0]}.png); write one edge PNG per image, named as its ground truth"
        )
    return pairs


def pyedgeeval(module: str, *names: str) -> tuple:  # type: ignore[type-arg]
    """``names`` from ``pyEdgeEval.<module>``, imported quietly (pyEdgeEval prints a warning
    about optional .mat readers and imports a deprecated SciPy path: not ours to show);
    ConfigError naming the extra to install when it is missing."""
    import importlib

    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            mod = importlib.import_module(f"pyEdgeEval.{module}")
    except ImportError as e:
        raise ConfigError(
            f"edge detection and evaluation need pyEdgeEval ({e}); install it with "
            "`pip install 'samkit[edges]'` (it builds a small C++ extension)"
        ) from None
    return tuple(getattr(mod, n) for n in names)


def _lib():  # type: ignore[no-untyped-def]
    (evaluate,) = pyedgeeval("common.binary_label", "evaluate_boundaries_threshold_multiple_gts")
    rec_prec_f1, interpolated_max = pyedgeeval(
        "common.metrics", "compute_rec_prec_f1", "interpolated_max_scores"
    )
    return evaluate, rec_prec_f1, interpolated_max


def image_counts(
    pred: np.ndarray,
    gts: list[np.ndarray],
    thrs: np.ndarray,
    max_dist: float = MAX_DIST,
    thin: bool = True,
) -> np.ndarray:
    """One image's matching counts at each threshold -> 4 x K (matched GT pixels, GT pixels,
    matched predicted pixels, predicted pixels)."""
    evaluate, _, _ = _lib()
    for g in gts:
        if g.shape != pred.shape:
            raise ConfigError(
                f"the prediction is {pred.shape[1]}x{pred.shape[0]} but its ground truth is "
                f"{g.shape[1]}x{g.shape[0]}; predict at the image's size"
            )
    counts = evaluate(
        thrs,
        np.asarray(pred, np.float64),
        [np.asarray(g, bool) for g in gts],
        max_dist=max_dist,
        apply_thinning=thin,
        apply_nms=False,
    )
    return np.stack(counts).astype(np.float64)


def scores_from_counts(counts: list[np.ndarray], thrs: np.ndarray) -> EdgeScores:
    """Per-image 4 x K counts (``image_counts``) -> ODS, OIS, AP, AUC, R50."""
    _, rec_prec_f1, interpolated_max = _lib()
    total = np.sum(counts, axis=0)
    best = np.zeros(4)
    for c in counts:
        _, _, f = rec_prec_f1(*c)
        best += c[:, int(np.argmax(f))]
    rec, prec, _ = rec_prec_f1(*total)
    ods_t, ods_r, ods_p, ods_f = interpolated_max(thrs, rec, prec)
    _, _, ois = rec_prec_f1(*best)
    ap = sum(np.max(prec[rec >= t], initial=0) for t in np.arange(0, 1, 0.01)) / 101
    r_u, i_u = np.unique(rec, return_index=True)
    auc = 0.0
    if len(r_u) > 1:
        auc = float(np.interp(np.arange(0, 1, 0.01), r_u, prec[i_u], left=0, right=0).sum() * 0.01)
    return EdgeScores(
        ODS=float(ods_f),
        OIS=float(ois),
        AP=float(ap),
        AUC=auc,
        R50=recall_at_precision(rec, prec, 0.5),
        ODS_threshold=float(ods_t),
        ODS_precision=float(ods_p),
        ODS_recall=float(ods_r),
        n_images=len(counts),
    )


def recall_at_precision(rec: np.ndarray, prec: np.ndarray, p: float) -> float:
    """The highest recall on the PR curve (points in threshold order, joined by segments) at
    which precision is >= p; 0 when it never is."""
    out = float(np.max(rec[prec >= p], initial=0.0))
    for i in range(len(rec) - 1):
        p0, p1 = prec[i], prec[i + 1]
        if (p0 - p) * (p1 - p) < 0:
            a = (p - p0) / (p1 - p0)
            out = max(out, float(rec[i] + a * (rec[i + 1] - rec[i])))
    return out


def _file_counts(job: tuple[Path, Path, np.ndarray, float]) -> np.ndarray:
    pred, gt, thrs, max_dist = job
    return image_counts(load_prediction(pred), load_ground_truth(gt), thrs, max_dist)


def evaluate_edges(
    pred_dir: str | Path,
    gt_dir: str | Path,
    n_thresholds: int = N_THRESHOLDS,
    max_dist: float = MAX_DIST,
    workers: int = 1,
    progress: bool = False,
) -> EdgeScores:
    """The BSDS500 protocol on a folder of edge PNGs against a folder of ground truth;
    ``workers`` processes match images in parallel (BSDS500's 200 test images at 99 thresholds
    take about an hour on one core)."""
    if n_thresholds < 1:
        raise ConfigError(f"n_thresholds must be >= 1 (the benchmark uses 99), got {n_thresholds}")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    thrs = thresholds(n_thresholds)
    jobs = [(p, g, thrs, max_dist) for _, p, g in pair_files(pred_dir, gt_dir)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="edges", unit="image")
    counts = []
    with contextlib.ExitStack() as stack:
        if workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            pool = stack.enter_context(ProcessPoolExecutor(min(workers, len(jobs))))
            results = pool.map(_file_counts, jobs)
        else:
            results = map(_file_counts, jobs)
        for c in results:
            counts.append(c)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return scores_from_counts(counts, thrs)
