"""Zero-shot object proposals with SAM (paper, §7.3 and Appendix D.3).

The automatic mask generator with the paper's proposal settings (the ``proposals`` preset: a
64 x 64 point grid on the whole image, no crops, no predicted-IoU or stability filter, box NMS
at 0.9); each mask is scored by the mean of its predicted IoU ("confidence") and its stability
score, and the 1000 best are kept, best first.
"""

from __future__ import annotations

from typing import Any

from samkit.automatic.generator import MaskGenerator
from samkit.errors import ConfigError
from samkit.image_io import ImageLike
from samkit.models.sam import Sam
from samkit.predictor import ImageEmbedding

TOP_K = 1000  # LVIS's AR@1000


def proposal_score(ann: dict[str, Any]) -> float:
    """A mask's proposal score: the mean of its predicted IoU and stability score."""
    return (float(ann["predicted_iou"]) + float(ann["stability_score"])) / 2


def check_top_k(top_k: int) -> None:
    if not isinstance(top_k, int) or top_k < 1:
        raise ConfigError(f"top_k must be an integer >= 1 (the paper keeps 1000), got {top_k!r}")


def rank_proposals(anns: list[dict[str, Any]], top_k: int = TOP_K) -> list[dict[str, Any]]:
    """SA-1B records -> the ``top_k`` best by ``proposal_score`` (ties keep the generator's
    order), each with its ``score`` added."""
    check_top_k(top_k)
    scored = [{**a, "score": proposal_score(a)} for a in anns]
    return sorted(scored, key=lambda a: -a["score"])[:top_k]


def generate_proposals(
    model: Sam,
    image: ImageLike,
    top_k: int = TOP_K,
    embedding: ImageEmbedding | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """The ranked object proposals of one image: SA-1B records (COCO RLE ``segmentation``)
    with ``score``, best first, at most ``top_k``. ``options`` override the ``proposals``
    preset's generator options (e.g. points_per_side, points_per_batch, progress)."""
    check_top_k(top_k)
    gen = MaskGenerator.from_preset(model, "proposals", **{"output_mode": "coco_rle", **options})
    return rank_proposals(gen.generate(image, embedding), top_k)
