"""Zero-shot edge detection with SAM (paper, §7.2 and Appendix D.2).

The recipe: prompt SAM with a 16 x 16 grid of foreground points (768 masks, three per point), no
IoU or stability filter; remove redundant masks by box NMS; Sobel-filter each remaining mask's
unthresholded probability map (sigmoid of the logits at the image's size) and keep the response
only on the mask's boundary pixels; take the pixel-wise maximum over masks, normalise it to
[0, 1] and thin it with the standard edge NMS of structured edge detection (Dollár & Zitnick:
triangle smoothing, orientation from second derivatives, non-maximum suppression across the
edge, damping near the image border), as implemented by ``pyEdgeEval`` (the ``edges`` extra).

"The mask's boundary pixels" are read as its morphological gradient: pixels of the thresholded
mask or of its 8-neighbourhood that touch the other side (a two-pixel band on the contour). The
image border is not a boundary. The response of each mask is kept sparse (only its band), so
memory does not grow with the number of masks times the image size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image
from torchvision.ops.boxes import batched_nms

from samkit.automatic.generator import MaskGenerator
from samkit.errors import ConfigError
from samkit.image_io import ImageLike, load_image
from samkit.masks import masks_to_boxes
from samkit.models.sam import Sam
from samkit.predictor import ImageEmbedding

_KERNEL = np.ones((3, 3), np.uint8)


@dataclass
class EdgeMap:
    """An image's edges. strength: H x W float32 in [0, 1] after edge NMS (0 = no edge);
    n_masks: masks predicted (points x 3); n_kept: masks left after box NMS, non-empty."""

    strength: np.ndarray
    n_masks: int
    n_kept: int

    def to_uint8(self) -> np.ndarray:
        """H x W uint8 edge strength (round(255 x strength)), the form BSDS tools read."""
        return np.round(np.clip(self.strength, 0.0, 1.0) * 255.0).astype(np.uint8)


@dataclass
class _MaskEdge:
    """One mask's boundary response, sparse: flat pixel indices and Sobel magnitudes."""

    index: np.ndarray
    value: np.ndarray


def detect_edges(
    model: Sam,
    image: ImageLike,
    points_per_side: int = 16,
    box_nms_thresh: float = 0.7,
    points_per_batch: int = 64,
    edge_nms: bool = True,
    embedding: ImageEmbedding | None = None,
) -> EdgeMap:
    """SAM's zero-shot edge map of an image (path, PIL or H x W x 3 uint8 RGB).

    points_per_side: the prompt grid (16 in the paper: 768 masks); box_nms_thresh: box IoU
    above which a less confident mask is dropped as redundant (1.0 keeps every mask);
    edge_nms: thin the edges (off: the normalised maximum of the Sobel responses);
    embedding: this image's cached ``ImageEmbedding`` (skips the encoder)."""
    if not 0.0 < box_nms_thresh <= 1.0:
        raise ConfigError(
            f"box_nms_thresh is a box IoU and must be in (0, 1], got {box_nms_thresh}"
        )
    img = load_image(image)
    h, w = img.shape[:2]
    gen = MaskGenerator.from_preset(
        model, "edges", points_per_side=points_per_side, points_per_batch=points_per_batch
    )
    thr = float(model.mask_threshold)
    edges: list[_MaskEdge] = []
    boxes, scores = [], []
    n_masks = 0
    for chunk in gen.mask_logits(img, embedding):
        n_masks += len(chunk.logits)
        binary = chunk.logits > thr
        for logits, mask, box, iou in zip(chunk.logits, binary, masks_to_boxes(binary), chunk.iou):
            e = _boundary_response(logits, mask, box)
            if e is not None:
                edges.append(e)
                boxes.append(box)
                scores.append(float(iou))
    strength = np.zeros(h * w, np.float32)
    if edges:
        keep = batched_nms(
            torch.as_tensor(np.stack(boxes), dtype=torch.float32),
            torch.as_tensor(scores),
            torch.zeros(len(edges), dtype=torch.int64),
            box_nms_thresh,
        ).tolist()
        for i in keep:
            e = edges[i]
            strength[e.index] = np.maximum(strength[e.index], e.value)
        top = strength.max()
        if top > 0:
            strength /= top
    else:
        keep = []
    out = strength.reshape(h, w)
    if edge_nms and out.any():
        out = edge_nms_thin(out)
    return EdgeMap(out, n_masks, len(keep))


def _boundary_response(logits: np.ndarray, mask: np.ndarray, box: np.ndarray) -> _MaskEdge | None:
    """Sobel magnitude of sigmoid(logits) on the boundary band of ``mask`` (H x W), computed
    in the mask's box plus a 2-pixel margin (the 3 x 3 Sobel and band need no more), or None
    for a mask with no boundary inside the image."""
    if not mask.any():
        return None
    h, w = mask.shape
    x0, y0 = max(int(box[0]) - 2, 0), max(int(box[1]) - 2, 0)
    x1, y1 = min(int(box[2]) + 3, w), min(int(box[3]) + 3, h)
    m = mask[y0:y1, x0:x1].astype(np.uint8)
    # Dilation / erosion ignore pixels beyond the image, so the image border is no boundary.
    band = cv2.dilate(m, _KERNEL) != cv2.erode(m, _KERNEL)
    if not band.any():
        return None
    prob = 1.0 / (1.0 + np.exp(-logits[y0:y1, x0:x1], dtype=np.float32))
    gx = cv2.Sobel(prob, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(prob, cv2.CV_32F, 0, 1, ksize=3)
    ys, xs = np.nonzero(band)
    value = np.sqrt(gx[ys, xs] ** 2 + gy[ys, xs] ** 2)
    return _MaskEdge((ys + y0) * w + (xs + x0), value.astype(np.float32))


def edge_nms_thin(strength: np.ndarray) -> np.ndarray:
    """The structured-edge NMS (pyEdgeEval's port of Dollár's ``edgesNmsMex`` with the edges
    toolbox's settings: radius 1, border damping 5 px, multiplier 1.01) of an H x W edge map in
    [0, 1] -> H x W float32 in [0, 1]."""
    fast_nms = _pyedgeeval_nms()
    out = fast_nms(np.asarray(strength, np.float64), r=1, s=5, m=1.01)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _pyedgeeval_nms():  # type: ignore[no-untyped-def]
    from samkit.eval.edges import pyedgeeval

    (fast_nms,) = pyedgeeval("preprocess", "fast_nms")
    return fast_nms


def overlay_edges(image: ImageLike, strength: np.ndarray) -> Image.Image:
    """The image, dimmed and grayed, with its edges drawn in red (opacity = edge strength)."""
    img = load_image(image).astype(np.float32)
    if strength.shape != img.shape[:2]:
        raise ConfigError(
            f"the edge map is {strength.shape[1]}x{strength.shape[0]} but the image is "
            f"{img.shape[1]}x{img.shape[0]}"
        )
    gray = img.mean(axis=2, keepdims=True) * 0.6 + 60.0
    a = np.clip(np.asarray(strength, np.float32), 0.0, 1.0)[..., None] ** 0.5
    red = np.array([255.0, 30.0, 30.0], np.float32)
    out = gray * (1.0 - a) + red * a
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
