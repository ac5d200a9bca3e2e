"""PerSAM and PerSAM-F: segment one personal object in new images from a single reference
image and mask (Zhang et al., "Personalize Segment Anything Model with One Shot").

PerSAM (training-free): a positive/negative location prior from the similarity with the
reference's target feature, target-guided attention and target-semantic prompting in the first
decoder pass, then two cascaded refinement passes. PerSAM-F: two learnable weights mix SAM's three
multimask outputs, fitted on the reference (SAM frozen), positive point only, a box in both
refinements. By default every step reproduces the official scripts (``faithful=True``); see
docs/persam.md for the quirks and what ``faithful=False`` changes.

Beyond the official scripts: several references of one object (few-shot: the mean target
embedding, the union of their location priors) and a presence score, so that an absent object
gives an empty mask.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from samkit.errors import ConfigError, PromptError, StateError
from samkit.image_io import ImageLike
from samkit.masks import mask_to_box
from samkit.models.sam import Sam
from samkit.models.transformer import PersamGuidance
from samkit.persam import video
from samkit.persam.finetune import fit_scale_weights
from samkit.persam.inputs import read_image, read_reference_mask
from samkit.persam.prior import (
    attention_prior,
    mask_cover,
    pooled_similarity,
    reference_cells,
    select_points,
    similarity_map,
    target_features,
)
from samkit.predictor import ImageEmbedding, Predictor
from samkit.transforms import boxes_to_input, coords_to_input

# The default presence threshold: the segmented region must look more like the reference object
# than the reference's own background does (docs/persam.md, "Absent objects").
PRESENCE_THRESHOLD = 0.0


@dataclass
class DecoderCall:
    """One decoder pass: its prompts (original-image pixels) and the IoU scores it returned."""

    points: np.ndarray
    labels: np.ndarray
    box: np.ndarray | None
    multimask: bool
    mask_input: bool
    scores: np.ndarray


@dataclass
class PersonalizedMask:
    """mask: bool H x W (empty when the object is judged absent); score: predicted IoU of the
    chosen mask; points: P x 2 (x, y) prompt points, positive first, with labels P (1 object,
    0 background); similarity: float32 H x W cosine similarity with the target; calls: every
    decoder pass, in order; presence: how much the segmented region looks like the reference
    object (1 = like the object, 0 = like the reference's background, -inf for an empty
    decoder mask); present: presence >= the threshold (always True without a threshold);
    logits: float32 H x W logits of the chosen mask (before the presence decision)."""

    mask: np.ndarray
    score: float
    points: np.ndarray
    labels: np.ndarray
    similarity: np.ndarray
    calls: list[DecoderCall] = field(default_factory=list)
    presence: float = float("inf")
    present: bool = True
    logits: np.ndarray | None = None


@dataclass
class _Decoded:
    low: torch.Tensor  # K x 4h x 4w low-res logits
    scores: np.ndarray  # K
    high: torch.Tensor  # K x H x W logits at the original size

    @property
    def masks(self) -> np.ndarray:
        return (self.high > 0).cpu().numpy()


class PerSAM:
    """One-shot personalised segmentation. ``PerSAM(model).fit(ref_image, ref_mask)``, then
    ``segment(image)``; ``finetune=True`` gives PerSAM-F (``steps`` and ``lr`` of its fit).
    ``faithful=False`` fixes the official code's quirks (docs/persam.md). An object whose
    ``presence`` falls below ``presence_threshold`` is reported absent with an empty mask; None
    always answers with a mask, as the official scripts do. After ``fit``:
    ``target_embedding`` (1 x 1 x C), ``target_feat`` (1 x C, normalised) and, for PerSAM-F,
    ``train_call`` (the decoder pass the weights were fitted on) and ``scale_weights``."""

    def __init__(
        self,
        model: Sam,
        finetune: bool = False,
        faithful: bool = True,
        steps: int = 1000,
        lr: float = 1e-3,
        presence_threshold: float | None = PRESENCE_THRESHOLD,
    ) -> None:
        if finetune and model.is_hq:
            raise ConfigError(
                "PerSAM-F mixes SAM's three multimask outputs, but an HQ-SAM model returns one "
                "mask per prompt; use PerSAM(model) (training-free) with HQ models, or PerSAM-F "
                "with a SAM model"
            )
        self.model = model.eval()
        self.finetune = finetune
        self.faithful = faithful
        self.steps = steps
        self.lr = lr
        self.presence_threshold = presence_threshold
        self._predictor = Predictor(model)
        self.target_embedding: torch.Tensor | None = None  # 1 x 1 x C
        self.target_feat: torch.Tensor | None = None  # 1 x C, L2-normalised
        self._weights: torch.Tensor | None = None  # 3, PerSAM-F only
        self.train_call: DecoderCall | None = None
        self._background = 0.0  # the references' background likeness to the target
        self._shot_feats: list[torch.Tensor] = []  # each reference's 1 x C normalised target

    # -- reference ------------------------------------------------------------------------

    def fit(
        self,
        ref_image: ImageLike | Sequence[ImageLike],
        ref_mask: ImageLike | Sequence[ImageLike],
    ) -> PerSAM:
        """Learn the target from one image and its mask (path/PIL/array, nonzero = object).

        Few-shot: a list of images and a list of their masks, all of the same object. The
        target embedding is the mean of each reference's own (so every reference weighs the
        same, whatever its size); the location prior is the largest of the similarities with
        each reference's target (the union of their positive priors); PerSAM-F fits its two
        weights on all references at once."""
        images = list(ref_image) if isinstance(ref_image, (list, tuple)) else [ref_image]
        masks = list(ref_mask) if isinstance(ref_mask, (list, tuple)) else [ref_mask]
        if not images or len(images) != len(masks):
            raise PromptError(
                f"give one mask per reference image: got {len(images)} image(s) and "
                f"{len(masks)} mask(s)"
            )
        grid = self.model.prompt_encoder.image_embedding_size
        shots = []
        for im, m in zip(images, masks):
            image = read_image(im, self.faithful)
            mask_rgb = read_reference_mask(m, image.shape[:2])
            with torch.no_grad():
                cells = reference_cells(self.model, mask_rgb, grid, self.faithful)
            emb = self._predictor.set_image(image)
            with torch.no_grad():
                target, _ = target_features(emb.features.embeddings, cells, self.finetune)
            shots.append((emb, mask_rgb, target))
        target = torch.stack([t for _, _, t in shots]).mean(0)
        self.target_embedding = target
        self.target_feat = target[0] / target[0].norm(dim=-1, keepdim=True)
        self._shot_feats = [t[0] / t[0].norm(dim=-1, keepdim=True) for _, _, t in shots]
        self._background = float(np.mean([self._background_likeness(e, m) for e, m, _ in shots]))
        if self.finetune:
            self._fit_weights([(e, m) for e, m, _ in shots])
        return self

    def _background_likeness(self, emb: ImageEmbedding, mask_rgb: np.ndarray) -> float:
        """Cosine similarity of the target with the mean feature of a reference's background."""
        grid = tuple(emb.features.embeddings.shape[-2:])
        s = self.model.image_size
        with torch.no_grad():
            fg = torch.as_tensor(mask_rgb.any(axis=2), device=self.model.device)
            whole = mask_cover(torch.ones_like(fg), grid, emb.input_size, s)  # type: ignore[arg-type]
            obj = mask_cover(fg, grid, emb.input_size, s)  # type: ignore[arg-type]
            b = pooled_similarity(emb.features.embeddings, whole - obj, self.target_feat)  # type: ignore[arg-type]
        return 0.0 if np.isnan(b) else b

    def _fit_weights(self, shots: list[tuple[ImageEmbedding, np.ndarray]]) -> None:
        logits, targets = [], []
        for emb, mask_rgb in shots:
            sim = self._similarity(emb)
            points, labels = select_points(sim, negative=False)
            out = self._decode(emb, points, labels, None, None, multimask=True)
            if not logits:  # the first reference's pass
                self.train_call = DecoderCall(points, labels, None, True, False, out.scores)
            fg = mask_rgb[..., 0] > 0 if self.faithful else mask_rgb.any(axis=2)
            logits.append(out.high.flatten(1))
            targets.append(torch.as_tensor(fg, device=self.model.device).flatten())
        self._weights = fit_scale_weights(
            torch.cat(logits, 1), torch.cat(targets), self.steps, self.lr
        )

    @property
    def scale_weights(self) -> np.ndarray:
        """PerSAM-F's mixing weights [1 - w1 - w2, w1, w2] for multimask outputs 1, 2, 3."""
        if self._weights is None:
            raise StateError(
                "scale weights exist only for a fitted PerSAM-F: use "
                "PerSAM(model, finetune=True).fit(ref_image, ref_mask)"
            )
        return self._weights.cpu().numpy()

    # -- targets --------------------------------------------------------------------------

    def segment(self, image: ImageLike, box: Sequence[float] | None = None) -> PersonalizedMask:
        """Find the personal object in one image. box (x0, y0, x1, y1), optional: a hint
        added to the first decoder pass (``segment_video`` passes the previous frame's)."""
        hint = None
        if box is not None:
            hint = np.asarray(box, dtype=np.float64).reshape(-1)
            if hint.shape != (4,) or not np.isfinite(hint).all():
                raise PromptError(f"box must be 4 finite numbers (x0, y0, x1, y1), got {box!r}")
        return self.segment_embedding(self.embed([image])[0], hint)

    def segment_many(
        self, images: Iterable[ImageLike], batch_size: int = 4
    ) -> list[PersonalizedMask]:
        """Segment a collection; images go through the encoder ``batch_size`` at a time."""
        return list(video.segment_many(self, images, batch_size))

    def segment_video(
        self,
        frames: Iterable[ImageLike] | str | os.PathLike,
        follow: bool = True,
        margin: int = 10,
    ) -> Iterator[PersonalizedMask]:
        """Segment frames in order (arrays, or a folder of images sorted by name), one result
        per frame, lazily; with ``follow`` the previous mask's box, grown by ``margin``
        pixels, is the first decoder pass's hint (``samkit.persam.video.segment_video``)."""
        return video.segment_video(self, frames, follow, margin)

    def embed(self, images: Sequence[ImageLike], batch_size: int = 4) -> list[ImageEmbedding]:
        """Read (``read_image``) and encode images, ``batch_size`` at a time through the
        encoder, for ``segment_embedding``."""
        arrays = [read_image(im, self.faithful) for im in images]
        return self._predictor.set_images(arrays, batch_size)

    def segment_embedding(
        self, emb: ImageEmbedding, box: np.ndarray | None = None
    ) -> PersonalizedMask:
        """Find the personal object in an image embedded by ``embed``. box: float (4,)
        (x0, y0, x1, y1) hint for the first decoder pass, or None."""
        if self.target_feat is None:
            raise StateError("PerSAM is not fitted: call fit(ref_image, ref_mask) first")
        sim = self._similarity(emb)
        if self.finetune:
            points, labels = select_points(sim, negative=False)
            logits, score, calls = self._cascade_f(emb, points, labels, box)
        else:
            points, labels = select_points(sim, negative=True)
            logits, score, calls = self._cascade(emb, points, labels, sim, box)
        mask = (logits > 0).cpu().numpy()
        presence = self.presence(emb, mask)
        present = self.presence_threshold is None or presence >= self.presence_threshold
        if not present:
            mask = np.zeros_like(mask)
        return PersonalizedMask(
            mask,
            score,
            points,
            labels,
            sim.cpu().numpy(),
            calls,
            presence,
            present,
            logits.float().cpu().numpy(),
        )

    def presence(self, emb: ImageEmbedding, mask: np.ndarray) -> float:
        """How much the region ``mask`` (bool H x W) of an embedded image looks like the
        target: (c - b) / (1 - b), c the cosine similarity of the target with the region's mean
        feature, b the same for the references' background. 1 = like the object, 0 = like the
        reference's background; -inf for an empty mask."""
        if not mask.any():
            return float("-inf")
        grid = tuple(emb.features.embeddings.shape[-2:])
        with torch.no_grad():
            m = torch.as_tensor(mask, device=self.model.device)
            cover = mask_cover(m, grid, emb.input_size, self.model.image_size)  # type: ignore[arg-type]
            c = pooled_similarity(emb.features.embeddings, cover, self.target_feat)  # type: ignore[arg-type]
        b = self._background
        return (c - b) / (1 - b) if b < 1 - 1e-6 else c - b

    def _similarity(self, emb: ImageEmbedding) -> torch.Tensor:
        """H x W location prior: the similarity with the target, or with several references
        the largest of their similarities (the union of their positive priors)."""
        feats = self._shot_feats if len(self._shot_feats) > 1 else [self.target_feat]
        with torch.no_grad():
            sims = [
                similarity_map(
                    self.model,
                    emb.features.embeddings,
                    f,  # type: ignore[arg-type]
                    emb.input_size,
                    emb.original_size,
                )
                for f in feats
            ]
        return sims[0] if len(sims) == 1 else torch.stack(sims).amax(0)

    def _cascade(
        self,
        emb: ImageEmbedding,
        pts: np.ndarray,
        lbl: np.ndarray,
        sim: torch.Tensor,
        hint: np.ndarray | None,
    ) -> tuple[torch.Tensor, float, list[DecoderCall]]:
        """PerSAM: guided first pass (1 mask), refine with its logits, then with box + logits."""
        grid = tuple(emb.features.embeddings.shape[-2:])
        with torch.no_grad():
            attn_sim = attention_prior(
                sim,
                grid,  # type: ignore[arg-type]
                emb.input_size,
                self.model.image_size,
                self.faithful,
            )
        assert self.target_embedding is not None
        guidance = PersamGuidance(attn_sim, self.target_embedding)
        calls: list[DecoderCall] = []
        out = self._call(calls, emb, pts, lbl, hint, None, False, guidance)
        out = self._call(calls, emb, pts, lbl, None, out.low[0:1], True)
        best = int(np.argmax(out.scores))
        box = mask_to_box(out.masks[best])
        out = self._call(calls, emb, pts, lbl, box, out.low[best : best + 1], True)
        best = int(np.argmax(out.scores))
        return out.high[best], float(out.scores[best]), calls

    def _cascade_f(
        self, emb: ImageEmbedding, pts: np.ndarray, lbl: np.ndarray, hint: np.ndarray | None
    ) -> tuple[torch.Tensor, float, list[DecoderCall]]:
        """PerSAM-F: 3 masks mixed by the learned weights, then two box + logits refinements."""
        w = self._weights
        assert w is not None
        calls: list[DecoderCall] = []
        out = self._call(calls, emb, pts, lbl, hint, None, True)
        mask = ((out.high * w[:, None, None]).sum(0) > 0).cpu().numpy()
        low = (out.low * w[:, None, None]).sum(0, keepdim=True)
        out = self._call(calls, emb, pts, lbl, mask_to_box(mask), low, True)
        best = int(np.argmax(out.scores))
        box = mask_to_box(out.masks[best])
        out = self._call(calls, emb, pts, lbl, box, out.low[best : best + 1], True)
        best = int(np.argmax(out.scores))
        return out.high[best], float(out.scores[best]), calls

    # -- decoder --------------------------------------------------------------------------

    def _call(
        self,
        calls: list[DecoderCall],
        emb: ImageEmbedding,
        pts: np.ndarray,
        lbl: np.ndarray,
        box: np.ndarray | None,
        mask_input: torch.Tensor | None,
        multimask: bool,
        guidance: PersamGuidance | None = None,
    ) -> _Decoded:
        """Decode and record the call. An empty mask gives no box (the official code crashes)."""
        out = self._decode(emb, pts, lbl, box, mask_input, multimask, guidance)
        calls.append(DecoderCall(pts, lbl, box, multimask, mask_input is not None, out.scores))
        return out

    def _decode(
        self,
        emb: ImageEmbedding,
        pts: np.ndarray,
        lbl: np.ndarray,
        box: np.ndarray | None,
        mask_input: torch.Tensor | None,
        multimask: bool,
        guidance: PersamGuidance | None = None,
    ) -> _Decoded:
        """One decoder pass on one image; prompts in original pixels (the official float64
        scaling, then float32). mask_input: 1 x 4h x 4w logits."""
        s = self.model.image_size
        dev = self.model.device
        c = coords_to_input(pts, emb.original_size, s)
        points = (
            torch.as_tensor(c, dtype=torch.float32, device=dev)[None],
            torch.as_tensor(lbl, dtype=torch.int32, device=dev)[None],
        )
        boxes = None
        if box is not None:
            b = boxes_to_input(box[None], emb.original_size, s)
            boxes = torch.as_tensor(b, dtype=torch.float32, device=dev)
        mi = None if mask_input is None else mask_input[None].float()
        with torch.no_grad():
            low, iou = self.model.decode(
                emb.features,
                points,
                boxes,
                mi,
                multimask_output=multimask,
                guidance=guidance,
            )
            high = self.model.postprocess_masks(low, emb.input_size, emb.original_size)
        return _Decoded(low[0], iou[0].float().cpu().numpy(), high[0])


__all__ = ["DecoderCall", "PerSAM", "PersonalizedMask", "read_image", "read_reference_mask"]
