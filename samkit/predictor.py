"""Embed once, prompt many times.

``Predictor.set_image`` runs the image encoder; ``predict`` decodes one prompt (points and/or a
box and/or a previous mask) and ``predict_batch`` decodes many prompts in one decoder call.
Coordinates are in original-image pixels; transforms live in ``samkit.transforms``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from samkit.errors import PromptError, StateError
from samkit.image_io import ImageLike, check_aspect_ratio, load_image
from samkit.models import fast_decoder
from samkit.models.sam import ImageFeatures, Sam
from samkit.transforms import boxes_to_input, coords_to_input, preprocess_shape, resize_image


@dataclass
class Prediction:
    """masks: K x H x W bool; scores: K float32 (predicted IoU); logits: K x 4h x 4w float32
    low-res logits (256 x 256 for SAM), usable as the next ``mask_input``."""

    masks: np.ndarray
    scores: np.ndarray
    logits: np.ndarray

    @property
    def best(self) -> np.ndarray:
        """The mask with the highest predicted IoU."""
        return self.masks[int(np.argmax(self.scores))]


@dataclass
class ImageEmbedding:
    """The encoder's output for one image plus the sizes needed to map prompts and masks."""

    features: ImageFeatures
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    model_id: str = ""

    def save(self, path: str | os.PathLike) -> None:
        """Save as safetensors, so a user embeds once and prompts later (or elsewhere)."""
        from safetensors.torch import save_file

        tensors = {"embeddings": self.features.embeddings.contiguous()}
        if self.features.hq_features is not None:
            tensors["hq_features"] = self.features.hq_features.contiguous()
        meta = {
            "original_size": json.dumps(list(self.original_size)),
            "input_size": json.dumps(list(self.input_size)),
            "model_id": self.model_id,
        }
        save_file({k: v.cpu() for k, v in tensors.items()}, str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> ImageEmbedding:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            keys = set(f.keys())
            if "embeddings" not in keys or "original_size" not in meta:
                raise StateError(f"{path} is not a samkit image embedding file")
            emb = f.get_tensor("embeddings")
            hq = f.get_tensor("hq_features") if "hq_features" in keys else None
        return cls(
            ImageFeatures(emb, hq),
            tuple(json.loads(meta["original_size"])),  # type: ignore[arg-type]
            tuple(json.loads(meta["input_size"])),  # type: ignore[arg-type]
            meta.get("model_id", ""),
        )


def model_id(model: Sam) -> str:
    """A short fingerprint of a model's weights, to refuse embeddings made by another model."""
    import hashlib

    enc = model.image_encoder
    # The ViT's patch-embedding bias (fingerprints of saved embeddings stay valid), else the
    # neck's first convolution, which every encoder (TinyViT too) has.
    enc_t = enc.patch_embed.proj.bias if hasattr(enc.patch_embed, "proj") else enc.neck[0].weight
    h = hashlib.sha1()
    for t in (
        model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix,
        model.mask_decoder.mask_tokens.weight,
        enc_t,
    ):
        h.update(t.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


class Predictor:
    """Interactive segmentation of one image at a time (``set_images`` embeds several)."""

    def __init__(self, model: Sam, fast: bool = True) -> None:
        """The predictor follows the model's device and precision (``samkit.load(...,
        device=, precision=)``); what goes in and comes out is numpy on the CPU, float32.

        fast: decode prompts with ``samkit.models.fast_decoder`` where it applies (plain SAM
        decoders, one image); False runs the reference decoder (``Sam.decode``) for every
        prompt. Both give the same masks (tests/test_fast_decoder.py)."""
        self.model = model.eval()
        self.fast = fast
        self.embedding: ImageEmbedding | None = None
        self._model_id = model_id(model)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def uses_fast_decoder(self, features: ImageFeatures, hq: bool = False) -> bool:
        """Whether prompts on these features are decoded by ``samkit.models.fast_decoder``.
        hq: the caller takes HQ-SAM's one mask per prompt (``supports_fast_path``)."""
        return (
            self.fast
            and fast_decoder.supports_fast_path(self.model, hq=hq)
            and len(features.embeddings) == 1
        )

    # -- images ---------------------------------------------------------------------------

    def set_image(self, image: ImageLike) -> ImageEmbedding:
        """Read, resize and encode one image; later ``predict`` calls prompt it."""
        self.embedding = self.set_images([image])[0]
        return self.embedding

    def set_images(self, images: Sequence[ImageLike], batch_size: int = 4) -> list[ImageEmbedding]:
        """Encode several images (in batches through the encoder); the last becomes current."""
        arrays = [load_image(im) for im in images]
        if not arrays:
            raise PromptError("set_images got no images; pass at least one")
        out: list[ImageEmbedding] = []
        s = self.model.image_size
        for a in arrays:
            check_aspect_ratio(a.shape[:2], s)
        for i in range(0, len(arrays), batch_size):
            chunk = arrays[i : i + batch_size]
            resized = [resize_image(a, s) for a in chunk]
            # Preprocess each image separately: normalise, then zero-pad (official order).
            with torch.inference_mode():
                tensors = []
                for r in resized:
                    # A read-only image (an unresized decode) is copied: torch needs writable
                    # memory to wrap it.
                    r = r if r.flags.writeable else r.copy()
                    t = torch.as_tensor(r, device=self.device).permute(2, 0, 1)[None]
                    tensors.append(self.model.preprocess(t))
                feats = self.model.encode(torch.cat(tensors, 0))
            for j, (a, r) in enumerate(zip(chunk, resized)):
                out.append(
                    ImageEmbedding(feats[j], a.shape[:2], r.shape[:2], self._model_id)  # type: ignore[arg-type]
                )
        self.embedding = out[-1]
        return out

    def set_embedding(self, embedding: ImageEmbedding) -> None:
        """Use a saved embedding (``ImageEmbedding.load``) instead of running the encoder."""
        if embedding.model_id and embedding.model_id != self._model_id:
            raise StateError(
                "this embedding was computed by a different model; embed the image again with "
                "this model (Predictor.set_image)"
            )
        if embedding.features.embeddings.shape[-1] != self.model.image_size // 16:
            raise StateError("this embedding's grid does not match the model's image size")
        self.embedding = ImageEmbedding(
            ImageFeatures(
                embedding.features.embeddings.to(self.device),
                None
                if embedding.features.hq_features is None
                else embedding.features.hq_features.to(self.device),
            ),
            embedding.original_size,
            embedding.input_size,
            embedding.model_id,
        )

    # -- prompts --------------------------------------------------------------------------

    def predict(
        self,
        points: np.ndarray | Sequence | None = None,
        labels: np.ndarray | Sequence | None = None,
        box: np.ndarray | Sequence | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
        hq_token_only: bool = False,
        return_logits: bool = False,
    ) -> Prediction:
        """Segment one object. points: N x 2 (x, y); labels: N (1 = object, 0 = background);
        box: 4 (x0, y0, x1, y1); mask_input: 1 x 4h x 4w logits from an earlier ``logits``.
        Returns K = 3 masks with ``multimask`` (1 otherwise; HQ models always return 1).
        With return_logits, ``masks`` holds float logits at the original size."""
        emb = self._require_embedding()
        pts, lbl = _check_points(points, labels, emb.original_size)
        bx = _check_box(box, emb.original_size)
        if bx is not None:
            bx = bx[None]
        mi = None
        if mask_input is not None:
            mi = _check_mask_input(mask_input, self._mask_input_size(), batch=False)[None]
        res = self._decode(
            None if pts is None else pts[None],
            None if lbl is None else lbl[None],
            bx,
            mi,
            multimask,
            hq_token_only,
            return_logits,
        )
        return Prediction(res[0][0], res[1][0], res[2][0])

    def predict_batch(
        self,
        points: np.ndarray | Sequence | None = None,
        labels: np.ndarray | Sequence | None = None,
        boxes: np.ndarray | Sequence | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
        hq_token_only: bool = False,
    ) -> list[Prediction]:
        """Decode N prompts in one decoder call: points N x P x 2 with labels N x P, and/or
        boxes N x 4, and/or mask_input N x 1 x 4h x 4w. Returns N predictions."""
        emb = self._require_embedding()
        pts = lbl = bx = mi = None
        n = None
        if points is not None or labels is not None:
            p = np.asarray(points, dtype=np.float64) if points is not None else None
            if p is None or p.ndim != 3:
                raise PromptError(
                    "predict_batch points must be N x P x 2 (N prompts of P points); "
                    f"got shape {None if p is None else p.shape}"
                )
            lab = np.asarray(labels) if labels is not None else None
            if lab is None or lab.shape != p.shape[:2]:
                raise PromptError(
                    f"predict_batch labels must be N x P = {p.shape[:2]}, got "
                    f"{None if lab is None else lab.shape}"
                )
            checked = [_check_points(p[i], lab[i], emb.original_size) for i in range(len(p))]
            pts = np.stack([c[0] for c in checked])
            lbl = np.stack([c[1] for c in checked])
            n = len(p)
        if boxes is not None:
            b = np.asarray(boxes, dtype=np.float64)
            if b.ndim != 2 or b.shape[1] != 4:
                raise PromptError(f"predict_batch boxes must be N x 4 XYXY, got shape {b.shape}")
            bx = np.stack([_check_box(bb, emb.original_size) for bb in b])
            if n is not None and len(bx) != n:
                raise PromptError(f"{len(bx)} boxes for {n} point sets; give one box per prompt")
            n = len(bx)
        if mask_input is not None:
            mi = _check_mask_input(mask_input, self._mask_input_size(), batch=True)
            if n is not None and len(mi) != n:
                raise PromptError(f"{len(mi)} mask inputs for {n} prompts; give one per prompt")
        if pts is None and bx is None and mi is None:
            raise PromptError("predict_batch needs points, boxes or mask_input")
        masks, scores, logits = self._decode(pts, lbl, bx, mi, multimask, hq_token_only, False)
        return [Prediction(masks[i], scores[i], logits[i]) for i in range(len(masks))]

    # -- internals ------------------------------------------------------------------------

    def _require_embedding(self) -> ImageEmbedding:
        if self.embedding is None:
            raise StateError("no image set: call Predictor.set_image(image) before predict")
        return self.embedding

    def _mask_input_size(self) -> tuple[int, int]:
        return self.model.prompt_encoder.mask_input_size

    @torch.inference_mode()
    def _decode(
        self,
        points: np.ndarray | None,
        labels: np.ndarray | None,
        boxes: np.ndarray | None,
        mask_input: np.ndarray | None,
        multimask: bool,
        hq_token_only: bool,
        return_logits: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        emb = self._require_embedding()
        s = self.model.image_size
        dev = self.device
        pt = None
        if points is not None:
            c = coords_to_input(points, emb.original_size, s)
            pt = (
                torch.as_tensor(c, dtype=torch.float32, device=dev),
                torch.as_tensor(labels, dtype=torch.int32, device=dev),
            )
        bt = None
        if boxes is not None:
            b = boxes_to_input(boxes, emb.original_size, s)
            bt = torch.as_tensor(b, dtype=torch.float32, device=dev)
        mt = None
        if mask_input is not None:
            mt = torch.as_tensor(mask_input, dtype=torch.float32, device=dev)
        if self.uses_fast_decoder(emb.features):
            dec = fast_decoder.decode_prompts(self.model, emb.features, pt, bt, mt, multimask)
            low, iou = dec.all_masks(), dec.iou
        else:
            low, iou = self.model.decode(
                emb.features, pt, bt, mt, multimask_output=multimask, hq_token_only=hq_token_only
            )
        up = self.model.postprocess_masks(low, emb.input_size, emb.original_size)
        masks = up if return_logits else up > self.model.mask_threshold
        return masks.cpu().numpy(), iou.float().cpu().numpy(), low.float().cpu().numpy()


def _check_points(
    points: np.ndarray | Sequence | None,
    labels: np.ndarray | Sequence | None,
    size: tuple[int, int],
) -> tuple[np.ndarray | None, np.ndarray | None]:
    if points is None and labels is None:
        return None, None
    if points is None or labels is None:
        raise PromptError("points and labels go together: pass both (labels: 1 object, 0 not)")
    p = np.asarray(points, dtype=np.float64)
    if p.ndim == 1 and p.shape[0] == 2:
        p = p[None]
    if p.ndim != 2 or p.shape[1] != 2 or len(p) == 0:
        raise PromptError(f"points must be N x 2 (x, y) with N >= 1, got shape {p.shape}")
    lab = np.asarray(labels).reshape(-1)
    if len(lab) != len(p):
        raise PromptError(f"{len(p)} points but {len(lab)} labels; give one label per point")
    if not np.isfinite(p).all():
        raise PromptError("points contain NaN or infinity; pass finite pixel coordinates")
    if not np.isin(lab, (0, 1)).all():
        raise PromptError(
            f"labels must be 1 (object) or 0 (background), got {sorted(set(lab.tolist()))}"
        )
    h, w = size
    bad = (p[:, 0] < 0) | (p[:, 0] > w) | (p[:, 1] < 0) | (p[:, 1] > h)
    if bad.any():
        x, y = p[np.argmax(bad)]
        raise PromptError(
            f"point ({x:g}, {y:g}) is outside the {w}x{h} image; points are (x, y) in pixels "
            "of the original image"
        )
    return p, lab.astype(np.int32)


def _check_box(box: np.ndarray | Sequence | None, size: tuple[int, int]) -> np.ndarray | None:
    if box is None:
        return None
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.shape != (4,):
        raise PromptError(f"box must be 4 numbers (x0, y0, x1, y1), got {b.size}")
    if not np.isfinite(b).all():
        raise PromptError("box contains NaN or infinity")
    x0, y0, x1, y1 = b
    if x1 < x0 or y1 < y0:
        raise PromptError(
            f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) has x1 < x0 or y1 < y0; boxes are "
            "(x0, y0, x1, y1) with the top-left corner first"
        )
    h, w = size
    if x1 < 0 or y1 < 0 or x0 > w or y0 > h:
        raise PromptError(f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) lies outside the {w}x{h} image")
    return b


def _check_mask_input(mask_input: np.ndarray, size: tuple[int, int], batch: bool) -> np.ndarray:
    m = np.asarray(mask_input, dtype=np.float32)
    want = ("N x 1 x " if batch else "1 x ") + f"{size[0]} x {size[1]}"
    ok = m.ndim == (4 if batch else 3) and m.shape[-3:] == (1, *size)
    if not ok:
        raise PromptError(
            f"mask_input must be {want} low-res logits (a previous result's .logits[i:i+1]), "
            f"got shape {m.shape}"
        )
    if not np.isfinite(m).all():
        raise PromptError("mask_input contains NaN or infinity")
    return m


__all__ = ["ImageEmbedding", "Prediction", "Predictor", "preprocess_shape"]
