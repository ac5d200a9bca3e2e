"""PerSAM-assisted DreamBooth (PerSAM paper, section 3.4): DreamBooth fine-tunes a text-to-image
diffusion model on a few photos of one subject, and its denoising loss covers every pixel, so the
model also learns the photos' backgrounds. PerSAM segments the subject in every training photo
from one reference mask; the loss is then computed over the subject's latent pixels only.

``subject_masks`` makes the masks, ``latent_mask`` brings a pixel mask to the latent grid, and
``masked_loss`` is the denoising loss over the subject. Nothing here imports diffusers: the loss
takes plain tensors (docs/persam.md, "PerSAM-assisted DreamBooth", has a training loop).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from samkit.errors import ConfigError, ImageError
from samkit.image_io import ImageLike
from samkit.models.sam import Sam
from samkit.persam.persam import PerSAM, PersonalizedMask
from samkit.persam.video import segment_many

# A latent pixel belongs to the subject when more than half of its area does: the majority of
# the (usually 8 x 8) image pixels it encodes. A soft alternative is ``threshold=None``.
LATENT_THRESHOLD = 0.5

REDUCTIONS = ("mean", "sum", "none")


def subject_masks(
    model: Sam,
    reference_image: ImageLike,
    reference_mask: ImageLike,
    images: Sequence[ImageLike],
    finetune: bool = False,
    faithful: bool = False,
    presence_threshold: float | None = None,
    batch_size: int = 4,
    progress: bool = False,
) -> list[PersonalizedMask]:
    """The subject's mask in every training photo, from one reference image and its mask
    (path/PIL/array, nonzero = subject): ``PerSAM`` fitted on the reference, then each image.

    One result per image, in order (``.mask`` bool H x W, ``.presence``, ``.score``). Defaults
    suit DreamBooth: the official quirks fixed (``faithful=False``) and, since every training
    photo shows the subject, always a mask (``presence_threshold=None``); a low ``presence``
    (below ``samkit.persam.persam.PRESENCE_THRESHOLD``) marks a mask to look at. The reference
    image, if among ``images``, gets PerSAM's prediction like the others (the CLI writes the
    given mask for it instead). ``finetune``: PerSAM-F (slow on CPU for large photos: its fit
    runs at the reference's full resolution). ``progress``: a tqdm bar over the images."""
    per = PerSAM(model, finetune=finetune, faithful=faithful, presence_threshold=presence_threshold)
    per.fit(reference_image, reference_mask)
    images = list(images)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(images), desc="dreambooth-masks", unit="photo")
    results = []
    for res in segment_many(per, images, batch_size):
        results.append(res)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return results


def latent_mask(
    mask: torch.Tensor | np.ndarray,
    latent_hw: tuple[int, int],
    threshold: float | None = LATENT_THRESHOLD,
) -> torch.Tensor:
    """A pixel mask on the latent grid: float32 B x 1 x h x w weights.

    mask: B x 1 x H x W or B x H x W, any resolution; bool or integer (nonzero = subject) or
    float in [0, 1] (a soft mask). It must cover the same region as the image the latents were
    encoded from (crop and resize it as the image): only the resolution changes here.

    Each latent pixel first gets the fraction of its area that is subject (area interpolation,
    i.e. the mean over the pixels it covers). With ``threshold`` (default 0.5) the weight is 1
    where that fraction is above it, else 0; with None it is the fraction itself (soft
    weights: boundary pixels count in proportion to their subject area)."""
    m = torch.as_tensor(mask)
    if m.ndim == 3:
        m = m[:, None]
    if m.ndim != 4 or m.shape[1] != 1:
        raise ImageError(
            f"the subject mask must be B x 1 x H x W or B x H x W, got shape {tuple(m.shape)}"
        )
    if m.is_floating_point():
        if m.numel() and (m.min() < 0 or m.max() > 1):
            raise ImageError(
                "a float subject mask must hold values in [0, 1], got "
                f"[{float(m.min()):g}, {float(m.max()):g}]; pass a bool mask (nonzero = subject)"
            )
        m = m.float()
    else:
        m = (m != 0).float()
    if threshold is not None and not 0 <= threshold < 1:
        raise ConfigError(f"threshold must be in [0, 1) or None, got {threshold}")
    cover = F.interpolate(m, size=tuple(latent_hw), mode="area")
    return cover if threshold is None else (cover > threshold).float()


def masked_loss(
    model_pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | np.ndarray,
    reduction: str = "mean",
    threshold: float | None = LATENT_THRESHOLD,
) -> torch.Tensor:
    """DreamBooth's denoising loss (mean squared error) over the subject only.

    model_pred, target: B x C x h x w (the UNet's prediction and its target: the noise, or the
    velocity for v-prediction). mask: the photos' subject masks, B x 1 x H x W or B x H x W at
    any resolution, brought to h x w by ``latent_mask`` (``threshold`` as there) and broadcast
    over the C channels. Computed in float32.

    reduction "mean": the mean squared error over the subject's latent pixels and channels of
    the whole batch, sum(w * (pred - target)^2) / (C * sum(w)); "sum": the numerator; "none":
    the B x C x h x w weighted squares. Background latent pixels (weight 0) add nothing and get
    a zero gradient. An image whose mask covers no latent pixel raises ImageError: it would be
    trained on nothing, which hides a broken mask (an absent subject, or one smaller than a
    latent pixel: try ``threshold=None``)."""
    if reduction not in REDUCTIONS:
        raise ConfigError(f"reduction must be one of {', '.join(REDUCTIONS)}, got '{reduction}'")
    if model_pred.ndim != 4 or model_pred.shape != target.shape:
        raise ConfigError(
            "model_pred and target must both be B x C x h x w of the same shape, got "
            f"{tuple(model_pred.shape)} and {tuple(target.shape)}"
        )
    b, c, h, w = model_pred.shape
    m = torch.as_tensor(mask)
    if m.ndim in (3, 4) and m.shape[0] != b:
        raise ImageError(
            f"the subject mask holds {m.shape[0]} mask(s) for a batch of {b}: give one mask "
            f"per image, B x 1 x H x W or B x H x W (got {tuple(m.shape)})"
        )
    weights = latent_mask(m, (h, w), threshold).to(model_pred.device)
    empty = (weights.flatten(1).sum(1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ImageError(
            f"the subject mask of batch image(s) {empty} covers no latent pixel at {h}x{w}: "
            "check those masks (is the subject there?), or pass threshold=None to weigh "
            "partly covered latent pixels"
        )
    err = (model_pred.float() - target.float()) ** 2 * weights
    if reduction == "none":
        return err
    if reduction == "sum":
        return err.sum()
    return err.sum() / (weights.sum() * c)


def contact_sheet(
    pictures: Sequence[Image.Image], captions: Sequence[str], tile: int = 256, columns: int = 4
) -> Image.Image:
    """Pictures (e.g. ``samkit.masks.overlay`` of each photo and its mask) side by side, each
    scaled to fit a ``tile`` x ``tile`` cell with its caption below, ``columns`` to a row: the
    masks of a training set at a glance."""
    if not pictures or len(pictures) != len(captions):
        raise ConfigError(
            f"give one caption per picture: got {len(pictures)} picture(s) and "
            f"{len(captions)} caption(s)"
        )
    cols = min(columns, len(pictures))
    rows = -(-len(pictures) // cols)
    text_h = 16
    sheet = Image.new("RGB", (cols * tile, rows * (tile + text_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k, (pic, caption) in enumerate(zip(pictures, captions)):
        pic = pic.copy()
        pic.thumbnail((tile, tile))
        x, y = (k % cols) * tile, (k // cols) * (tile + text_h)
        sheet.paste(pic, (x + (tile - pic.width) // 2, y + (tile - pic.height) // 2))
        draw.text((x + 4, y + tile + 2), caption, fill=(0, 0, 0))
    return sheet


__all__ = ["contact_sheet", "latent_mask", "masked_loss", "subject_masks"]
