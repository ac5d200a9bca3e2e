"""Several personal objects at once: one fit with several references (image, mask, name), one
mask per object in each image, every pixel given to at most one object.

Each object is a ``PerSAM`` of its own (references with the same name are few-shot references
of one object). An image is encoded once for all objects; the masks are merged as the official
video script does: a pixel belongs to the object with the largest logit, over a background at
zero, so a pixel is background unless some object's logit is positive (ties go to the object
named first). Objects judged absent take no pixel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from samkit.errors import PromptError
from samkit.image_io import ImageLike
from samkit.models.sam import Sam
from samkit.persam.persam import PRESENCE_THRESHOLD, PerSAM, PersonalizedMask
from samkit.predictor import ImageEmbedding

Reference = tuple[ImageLike, ImageLike, str]  # (image, mask, name)


@dataclass
class PersonalizedObjects:
    """One image's result for several objects. names: K; labels: int32 H x W (0 background,
    k + 1 = names[k]); objects: each object's own ``PersonalizedMask`` before the merge (its
    prompts, score, presence)."""

    names: list[str]
    labels: np.ndarray
    objects: list[PersonalizedMask]

    @property
    def masks(self) -> np.ndarray:
        """bool K x H x W, disjoint: the merged mask of each object, in ``names`` order."""
        return self.labels[None] == np.arange(1, len(self.names) + 1)[:, None, None]

    @property
    def present(self) -> list[bool]:
        return [o.present for o in self.objects]

    def __getitem__(self, name: str) -> np.ndarray:
        """The merged bool H x W mask of the object called ``name``."""
        if name not in self.names:
            raise KeyError(f"no object named {name!r}; the objects are {self.names}")
        return self.labels == self.names.index(name) + 1


class MultiPerSAM:
    """PerSAM for several objects: ``MultiPerSAM(model).fit([(image, mask, name), ...])``, then
    ``segment(image)`` -> ``PersonalizedObjects``. References sharing a name are several views
    of one object (few-shot). ``finetune``, ``faithful`` and ``presence_threshold`` are those of
    ``PerSAM`` and apply to every object."""

    def __init__(
        self,
        model: Sam,
        finetune: bool = False,
        faithful: bool = True,
        presence_threshold: float | None = PRESENCE_THRESHOLD,
    ) -> None:
        self.model = model
        self.finetune = finetune
        self.faithful = faithful
        self.presence_threshold = presence_threshold
        self.names: list[str] = []
        self.objects: list[PerSAM] = []

    def fit(self, references: Iterable[Reference]) -> MultiPerSAM:
        """Learn every object. references: (image, mask, name) triples; the objects keep the
        order in which their names first appear."""
        groups: dict[str, tuple[list[ImageLike], list[ImageLike]]] = {}
        for ref in references:
            if len(ref) != 3:
                raise PromptError(f"a reference is (image, mask, name), got {len(ref)} items")
            image, mask, name = ref
            groups.setdefault(str(name), ([], []))
            groups[str(name)][0].append(image)
            groups[str(name)][1].append(mask)
        if not groups:
            raise PromptError("MultiPerSAM.fit needs at least one (image, mask, name) reference")
        self.names, self.objects = [], []
        for name, (images, masks) in groups.items():
            per = PerSAM(
                self.model,
                finetune=self.finetune,
                faithful=self.faithful,
                presence_threshold=self.presence_threshold,
            )
            self.names.append(name)
            self.objects.append(per.fit(images, masks))
        return self

    def segment(self, image: ImageLike) -> PersonalizedObjects:
        """Find every object in one image (encoded once)."""
        return self.segment_embedding(self.embed([image])[0])

    def segment_many(
        self, images: Sequence[ImageLike], batch_size: int = 4
    ) -> list[PersonalizedObjects]:
        """Segment a collection; images go through the encoder ``batch_size`` at a time."""
        out: list[PersonalizedObjects] = []
        for i in range(0, len(images), batch_size):
            out += [self.segment_embedding(e) for e in self.embed(images[i : i + batch_size])]
        return out

    def embed(self, images: Sequence[ImageLike], batch_size: int = 4) -> list[ImageEmbedding]:
        if not self.objects:
            raise PromptError("MultiPerSAM is not fitted: call fit([(image, mask, name), ...])")
        return self.objects[0].embed(images, batch_size)

    def segment_embedding(self, emb: ImageEmbedding) -> PersonalizedObjects:
        results = [per.segment_embedding(emb) for per in self.objects]
        return PersonalizedObjects(list(self.names), merge_by_logit(results), results)


def merge_by_logit(results: Sequence[PersonalizedMask]) -> np.ndarray:
    """int32 H x W: argmax over [0, logits_1, ..., logits_K] (k + 1 = results[k]); absent
    objects take no pixel. The official video script's merge."""
    h, w = results[0].mask.shape
    stack = np.zeros((len(results) + 1, h, w), np.float32)
    for k, res in enumerate(results, 1):
        if not res.present or res.logits is None:
            stack[k] = -np.inf
        else:
            stack[k] = res.logits
    return stack.argmax(0).astype(np.int32)


__all__ = ["MultiPerSAM", "PersonalizedObjects", "merge_by_logit"]
