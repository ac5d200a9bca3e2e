"""COCO-style evaluation through pycocotools: mask AP of instance segmentation and class-agnostic
mask AR of object proposals (the SAM paper's §7.3 and §7.4 protocols).

The numbers are pycocotools' own (``COCOeval`` does the matching and accumulation); this
module loads the files with clear errors, sets the parameters and reads the accumulated
arrays with pycocotools' summary rule (mean over the entries > -1), so any ``maxDets`` works and
nothing is printed. Mask results are evaluated without their ``bbox`` field, so that object
sizes (small < 32², large > 96²) are mask areas, as detectron2 does.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from samkit.errors import ConfigError

AREAS = {"s": "small", "m": "medium", "l": "large"}


def read_json(source: str | Path | dict | list, what: str) -> Any:
    if isinstance(source, (dict, list)):
        return source
    try:
        return json.loads(Path(source).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the {what} {source}: {e}") from None


def load_ground_truth(source: str | Path | dict):  # type: ignore[no-untyped-def]
    """A COCO (or LVIS) instance-segmentation JSON -> ``pycocotools.coco.COCO``, quietly.
    Annotations without ``iscrowd`` (LVIS) count as not crowd."""
    from pycocotools.coco import COCO

    data = read_json(source, "ground truth")
    if not isinstance(data, dict) or not {"images", "annotations"} <= set(data):
        raise ConfigError(
            f"the ground truth {source} is not a COCO dataset: expected a JSON object with "
            "'images', 'annotations' and 'categories'"
        )
    data = {**data, "annotations": [{"iscrowd": 0, **a} for a in data["annotations"]]}
    data.setdefault("categories", [{"id": 1, "name": "object"}])
    gt = COCO()
    gt.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def load_results(gt, source: str | Path | list, kind: str = "segm"):  # type: ignore[no-untyped-def]
    """A COCO results list (``image_id``, ``category_id``, ``segmentation`` RLE or ``bbox``,
    ``score``) -> ``COCO`` of the results, after checking its images are the ground truth's."""
    res = read_json(source, "results")
    if isinstance(res, dict) and "annotations" in res:
        res = res["annotations"]  # a COCO dataset of predictions: its annotations
    if not isinstance(res, list) or not res:
        raise ConfigError(
            f"the results {source} are empty or not a COCO results list (a JSON list of "
            "{image_id, category_id, segmentation, score})"
        )
    field = "segmentation" if kind == "segm" else "bbox"
    if field not in res[0]:
        raise ConfigError(f"the results {source} have no '{field}' to evaluate ({kind})")
    unknown = {r["image_id"] for r in res} - set(gt.getImgIds())
    if unknown:
        raise ConfigError(
            f"{len(unknown)} image ids of the results are not in the ground truth (e.g. "
            f"{next(iter(unknown))}); write the results with the ground truth's ids "
            "(`samkit proposals ... --coco GT.json`)"
        )
    res = [{"category_id": 1, **r} for r in res]
    if kind == "segm":
        # With a bbox present, loadRes takes the object's area from the box, not the mask, and
        # small / medium / large change meaning; drop it, as detectron2's COCO evaluator does.
        res = [{k: v for k, v in r.items() if k != "bbox"} for r in res]
    with contextlib.redirect_stdout(io.StringIO()):
        return gt.loadRes(res)


def run_cocoeval(  # type: ignore[no-untyped-def]
    gt, dt, kind: str = "segm", use_cats: bool = True, max_dets: tuple[int, ...] = (1, 10, 100)
):
    """``COCOeval`` evaluated and accumulated (quietly) with these parameters."""
    from pycocotools.cocoeval import COCOeval

    if kind not in ("segm", "bbox"):
        raise ConfigError(f"unknown IoU type '{kind}'; choose segm or bbox")
    e = COCOeval(gt, dt, kind)
    e.params.useCats = int(use_cats)
    e.params.maxDets = list(max_dets)
    with contextlib.redirect_stdout(io.StringIO()):
        e.evaluate()
        e.accumulate()
    return e


def summarize(  # type: ignore[no-untyped-def]
    e, ap: bool, iou_thr: float | None = None, area: str = "all", max_dets: int = 100
) -> float:
    """One number of ``COCOeval.summarize``: AP (or AR) over IoU 0.5:0.95 (or at ``iou_thr``),
    objects of one area range, the top ``max_dets`` results per image; -1 if nothing counts."""
    p = e.params
    a = p.areaRngLbl.index(area)
    m = list(p.maxDets).index(max_dets)
    s = e.eval["precision"][..., a, m] if ap else e.eval["recall"][..., a, m]
    if iou_thr is not None:
        s = s[np.where(np.isclose(p.iouThrs, iou_thr))[0]]
    s = s[s > -1]
    return float(np.mean(s)) if s.size else -1.0


def evaluate_instances(
    gt: str | Path | dict, results: str | Path | list, kind: str = "segm"
) -> dict[str, float]:
    """Instance segmentation (or, with kind="bbox", detection): COCO AP, AP50, AP75, APs, APm,
    APl and AR@1, AR@10, AR@100, per category then averaged, as ``COCOeval.summarize``."""
    g = load_ground_truth(gt)
    e = run_cocoeval(g, load_results(g, results, kind), kind)
    out = {
        "AP": summarize(e, True),
        "AP50": summarize(e, True, iou_thr=0.5),
        "AP75": summarize(e, True, iou_thr=0.75),
    }
    for k, area in AREAS.items():
        out[f"AP{k}"] = summarize(e, True, area=area)
    for n in (1, 10, 100):
        out[f"AR@{n}"] = summarize(e, False, max_dets=n)
    return out


def evaluate_proposals(
    gt: str | Path | dict, proposals: str | Path | list, max_dets: tuple[int, ...] = (10, 100, 1000)
) -> dict[str, float]:
    """Object proposals: class-agnostic (``useCats=0``) mask AR over IoU 0.5:0.95 at each of
    ``max_dets`` proposals per image (ranked by score), and ARs / ARm / ARl at the largest."""
    g = load_ground_truth(gt)
    e = run_cocoeval(g, load_results(g, proposals), "segm", use_cats=False, max_dets=max_dets)
    top = max(max_dets)
    out = {f"AR@{n}": summarize(e, False, max_dets=n) for n in max_dets}
    for k, area in AREAS.items():
        out[f"AR{k}@{top}"] = summarize(e, False, area=area, max_dets=top)
    return out
