"""What a worker does to one image: the three annotation modes.

- everything: the automatic generator (``samkit.MaskGenerator``), SA-1B records as they are;
- boxes: one mask per detection box (zero-shot instance segmentation, paper D.4: the box,
  then one refinement pass with the most confident mask fed back together with the box);
- personalize: PerSAM fitted once per worker on a reference image + mask, one mask per image.

Every mode returns SA-1B annotation dicts (COCO RLE, bbox XYWH, area, predicted_iou,
stability_score, point_coords, crop_box); boxes adds category_id and detection_score.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from samkit.engine.collect import ImageItem
from samkit.errors import ConfigError
from samkit.eval.metrics import stability_scores
from samkit.formats import mask_record

MODES = ("everything", "boxes", "personalize")


@dataclass(frozen=True)
class ModeSpec:
    """Everything a worker needs to build its annotator (plain values, so it pickles).
    device / precision: as ``samkit.load`` takes them; a local worker on a multi-GPU machine
    is given its own ``cuda:N``.
    options: MaskGenerator options (everything), or ref_image / ref_mask / finetune
    (personalize); boxes takes its prompts per image instead. made_with: the record of these
    settings written at the start of each result (``samkit.engine.settings``)."""

    mode: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)
    made_with: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    precision: str = "fp32"


class Annotator(Protocol):
    def __call__(
        self, image: np.ndarray, prompts: list[dict[str, Any]]
    ) -> list[dict[str, Any]]: ...


def build_annotator(spec: ModeSpec) -> Annotator:
    """Load the model and build the spec's annotator (in the worker, once)."""
    import samkit

    if spec.mode not in MODES:
        raise ConfigError(f"unknown mode '{spec.mode}'; choose one of {', '.join(MODES)}")
    model = samkit.load(spec.model, device=spec.device, precision=spec.precision)
    if spec.mode == "everything":
        return Everything(model, spec.options)
    if spec.mode == "boxes":
        return Boxes(model)
    return Personalize(model, **spec.options)


def _is_out_of_memory(e: BaseException) -> bool:
    return isinstance(e, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(e, RuntimeError) and "out of memory" in str(e).lower()
    )


class Everything:
    """The automatic generator; on out-of-memory, retries the image with half the
    points_per_batch (down to 1), which bounds the decoder's memory without changing masks."""

    def __init__(self, model: Any, options: dict[str, Any]) -> None:
        from samkit.automatic import MaskGenerator

        opts = {**options, "output_mode": "coco_rle"}
        preset = opts.pop("preset", None)
        self.generator = MaskGenerator.from_preset(model, preset or "default", **opts)
        self.points_per_batch = self.generator.points_per_batch
        self.retries = 0  # out-of-memory retries so far (for the run log)

    def __call__(self, image: np.ndarray, prompts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        gen = self.generator
        gen.points_per_batch = self.points_per_batch
        while True:
            try:
                return gen.generate(image)
            except Exception as e:
                if not _is_out_of_memory(e) or gen.points_per_batch == 1:
                    raise
                gen.points_per_batch = max(1, gen.points_per_batch // 2)
                self.retries += 1
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()


class Boxes:
    """One mask per detection box: box prompt, then the box again with the most confident
    mask's logits (one refinement pass, as in the paper's instance-segmentation protocol)."""

    stability_offset = 1.0

    def __init__(self, model: Any) -> None:
        from samkit.predictor import Predictor

        self.predictor = Predictor(model)

    def __call__(self, image: np.ndarray, prompts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not prompts:
            return []
        p = self.predictor
        p.set_image(image)
        xywh = np.array([d["bbox"] for d in prompts], dtype=np.float64)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        first = p.predict_batch(boxes=boxes, multimask=True)
        out = []
        for det, box, pred in zip(prompts, boxes, first):
            best = int(np.argmax(pred.scores))
            ref = p.predict(
                box=box,
                mask_input=pred.logits[best : best + 1],
                multimask=False,
                return_logits=True,
            )
            logits = ref.masks[0]
            thr = p.model.mask_threshold
            stab = stability_scores(logits[None].astype(np.float32), thr, self.stability_offset)
            rec = mask_record(logits > thr, ref.scores[0], float(stab[0]))
            rec["category_id"] = det.get("category_id", 1)
            rec["detection_score"] = det.get("score")
            rec["prompt_box"] = [float(v) for v in det["bbox"]]
            out.append(rec)
        return out


class Personalize:
    """PerSAM (or PerSAM-F with finetune) fitted once on the reference; one mask per image.
    stability_score is null: the records keep PerSAM's own presence and score instead of a
    stability measured on one pass of its cascade."""

    def __init__(self, model: Any, ref_image: str, ref_mask: str, finetune: bool = False) -> None:
        from samkit.persam.persam import PerSAM

        self.persam = PerSAM(model, finetune=finetune).fit(ref_image, ref_mask)

    def __call__(self, image: np.ndarray, prompts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        res = self.persam.segment(image)
        if not res.mask.any():
            return []
        pos = res.points[res.labels == 1].tolist()
        return [mask_record(res.mask, res.score, None, pos)]


# -- boxes: the detection file ----------------------------------------------------------------


def load_detections(
    path: str | Path, items: list[ImageItem]
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """A COCO detection file (``images`` with file_name, ``annotations`` with image_id and
    bbox XYWH, optional score and category_id; ``categories``) -> the boxes of each image of
    the collection (keyed by file_name) and the categories. A detection image matches a
    collection image by relative path, else by base name when that is unique."""
    try:
        data = json.loads(Path(path).read_text())
        images = {im["id"]: im["file_name"] for im in data["images"]}
        anns = data["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(
            f"cannot read the detections {path}: {e}; expected a COCO JSON with 'images' "
            "(id, file_name) and 'annotations' (image_id, bbox [x, y, w, h])"
        ) from None
    by_rel = {it.file_name: it.file_name for it in items}
    base_count: dict[str, int] = {}
    for it in items:
        base_count[Path(it.file_name).name] = base_count.get(Path(it.file_name).name, 0) + 1
    by_base = {Path(it.file_name).name: it.file_name for it in items}
    out: dict[str, list[dict[str, Any]]] = {it.file_name: [] for it in items}
    for a in anns:
        fn = images.get(a.get("image_id"))
        if fn is None:
            continue
        key = by_rel.get(fn)
        if key is None and base_count.get(Path(fn).name) == 1:
            key = by_base[Path(fn).name]
        if key is not None:
            out[key].append(
                {"bbox": a["bbox"], "category_id": a.get("category_id", 1), "score": a.get("score")}
            )
    cats = data.get("categories") or [{"id": 1, "name": "object"}]
    return out, cats
