"""PerSAM video object segmentation (DAVIS semi-supervised): the first frame's label map names
the objects; each later frame is segmented object by object, prompted by the object's target
similarity and its previous box, and the objects are merged by the largest logit.

This is the official ``persam_video.py`` / ``persam_video_f.py`` algorithm, a different one from
image PerSAM: (mean + max) / 2 target features, positive points only (top-2, or top-1 for the
fine-tuned variant) plus the previous box's centre, the previous box grown by 10 pixels as a box
prompt. ``faithful=True`` keeps the official quirks; ``faithful=False`` (the default here) fixes
them. docs/persam.md, "Video", lists both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from samkit.errors import ImageError, PromptError
from samkit.image_io import ImageLike, load_image
from samkit.masks import mask_to_box
from samkit.models.sam import Sam
from samkit.persam.finetune import fit_scale_weights
from samkit.persam.persam import PerSAM
from samkit.persam.prior import reference_cells, similarity_map, target_features
from samkit.predictor import ImageEmbedding

MASK_VALUE = 215  # the official scripts draw the first-frame mask as (215 * gt, 0, 0): --exp 215


@dataclass
class _Object:
    label: int  # its value in the label maps
    feat: torch.Tensor  # 1 x C, normalised target feature
    weights: torch.Tensor | None  # 3 mixing weights (fine-tuned variant)


class PerSAMVideo:
    """``PerSAMVideo(model).track(frames, first_labels)`` yields an int32 H x W label map per
    frame (0 background, the first frame's labels for the objects); the first frame's own map
    is yielded as given. ``finetune=True`` is ``persam_video_f`` (two mixing weights per object,
    fitted on the first frame, ``steps`` at ``lr``); ``faithful=True`` reproduces the official
    quirks."""

    def __init__(
        self,
        model: Sam,
        finetune: bool = False,
        faithful: bool = False,
        steps: int = 800,
        lr: float = 4e-4,
        margin: int = 10,
    ) -> None:
        self.model = model.eval()
        self.finetune = finetune
        self.faithful = faithful
        self.steps = steps
        self.lr = lr
        self.margin = margin
        self._engine = PerSAM(model, faithful=faithful, presence_threshold=None)

    def track(
        self,
        frames: Sequence[ImageLike],
        first_labels: np.ndarray,
        progress: bool = False,
    ) -> Iterator[np.ndarray]:
        """frames: images in order (paths, PIL, arrays; read like DAVIS's loader, with PIL);
        first_labels: int H x W label map of the first frame (0 = background)."""
        if len(frames) == 0:
            raise ImageError("no frames to track")
        first = load_image(frames[0])
        labels0 = np.asarray(first_labels).astype(np.int32)
        if labels0.shape != first.shape[:2]:
            raise ImageError(
                f"the first-frame mask is {labels0.shape[1]}x{labels0.shape[0]} (WxH) but the "
                f"first frame is {first.shape[1]}x{first.shape[0]}; give that frame's mask"
            )
        ids = [int(v) for v in np.unique(labels0) if v != 0]
        if not ids:
            raise PromptError("the first-frame mask is empty: mark each object with its label")
        emb = self._embed(first)
        objects = [self._fit_object(emb, labels0 == k, k) for k in ids]
        prev = [labels0 == k for k in ids]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(frames), desc="personalize-video", unit="frame")
            bar.update(1)
        yield labels0
        for frame in frames[1:]:
            emb = self._embed(load_image(frame))
            labels, prev = self._step(emb, objects, prev)
            if bar is not None:
                bar.update(1)
            yield labels
        if bar is not None:
            bar.close()

    # -- first frame ----------------------------------------------------------------------

    def _embed(self, image: np.ndarray) -> ImageEmbedding:
        return self._engine.embed([image])[0]

    def _fit_object(self, emb: ImageEmbedding, gt: np.ndarray, label: int) -> _Object:
        grid = self.model.prompt_encoder.image_embedding_size
        value = MASK_VALUE if self.faithful else 255
        mask_rgb = np.zeros((*gt.shape, 3), np.uint8)
        mask_rgb[..., 0] = gt * value
        if not self.faithful:
            mask_rgb[..., 1:] = mask_rgb[..., :1]
        with torch.no_grad():
            cells = reference_cells(self.model, mask_rgb, grid, self.faithful)
            _, feat = target_features(emb.features.embeddings, cells, mean_max=True)
        weights = None
        if self.finetune:
            points, labels, box = self._prompts(emb, feat, gt)
            out = self._engine._decode(emb, points, labels, box, None, multimask=True)
            target = torch.as_tensor(gt, device=self.model.device)
            weights = fit_scale_weights(out.high, target, self.steps, self.lr)
        return _Object(label, feat, weights)

    # -- later frames ---------------------------------------------------------------------

    def _step(
        self, emb: ImageEmbedding, objects: list[_Object], prev: list[np.ndarray]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """One frame: each object's logits, the merge, and the masks that give the next boxes."""
        h, w = emb.original_size
        stack = np.zeros((len(objects) + 1, h, w), np.float32)
        # Official: the masks of the labels present in the last prediction are paired with the
        # objects by position, so once an object vanishes the later ones get wrong boxes and
        # the last ones are dropped for the rest of the video.
        n = min(len(objects), len(prev)) if self.faithful else len(objects)
        stack[n + 1 :] = -np.inf
        for j in range(n):
            stack[j + 1] = self._segment_object(emb, objects[j], prev[j])
        winner = stack.argmax(0)
        lut = np.array([0] + [o.label for o in objects], np.int32)
        labels = lut[winner]
        if self.faithful:
            nxt = [labels == v for v in np.unique(labels) if v != 0]
        else:  # each object keeps its own last seen mask
            nxt = [
                labels == o.label if (labels == o.label).any() else p for o, p in zip(objects, prev)
            ]
        return labels, nxt

    def _prompts(
        self, emb: ImageEmbedding, feat: torch.Tensor, prev: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-k similarity points plus the previous box's centre (all positive), and the
        previous mask's box grown by ``margin`` pixels."""
        with torch.no_grad():
            sim = similarity_map(
                self.model, emb.features.embeddings, feat, emb.input_size, emb.original_size
            )
        k = 1 if self.finetune else 2
        idx = sim.flatten().topk(k)[1].cpu().numpy()
        w = sim.shape[1]
        pts = [[int(i % w), int(i // w)] for i in idx]
        ys, xs = np.nonzero(prev)
        x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
        h, w = prev.shape
        # Official: clamped to W and H themselves, one pixel past the image.
        xm, ym = (w, h) if self.faithful else (w - 1, h - 1)
        m = self.margin
        box = np.array([max(x0 - m, 0), max(y0 - m, 0), min(x1 + m, xm), min(y1 + m, ym)])
        pts.append([int((x0 + x1) // 2), int((y0 + y1) // 2)])
        return np.array(pts, np.int64), np.ones(len(pts), np.int64), box.astype(np.float64)

    def _segment_object(self, emb: ImageEmbedding, obj: _Object, prev: np.ndarray) -> np.ndarray:
        """The object's H x W logits in this frame (three decoder passes)."""
        pts, lbl, box = self._prompts(emb, obj.feat, prev)
        decode = self._engine._decode
        out = decode(emb, pts, lbl, box, None, multimask=True)
        if obj.weights is None:
            counts = out.masks.reshape(len(out.scores), -1).sum(1)
            if self.faithful:
                # Official --large: the counts go through np.array(..., dtype=np.uint8), so the
                # "largest" mask is the one whose pixel count is largest modulo 256.
                counts = counts % 256
            best = int(np.argmax(counts))
            out = decode(emb, pts, lbl, None, out.low[best : best + 1], True)
        else:
            w = obj.weights
            mixed = (out.high * w[:, None, None]).sum(0)
            mask = (mixed > 0).cpu().numpy()
            if not mask.any():  # official fallback: the best score, scaled by w[0]
                mask = out.masks[int(np.argmax(out.scores * float(w[0])))]
            low = (out.low * w[:, None, None]).sum(0, keepdim=True)
            out = decode(emb, pts, lbl, mask_to_box(mask), low, True)
        best = int(np.argmax(out.scores))
        box2 = mask_to_box(out.masks[best])
        out = decode(emb, pts, lbl, box2, out.low[best : best + 1], True)
        best = int(np.argmax(out.scores))
        return out.high[best].float().cpu().numpy()


__all__ = ["MASK_VALUE", "PerSAMVideo"]
