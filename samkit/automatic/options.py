"""Everything mode's options: the paper's presets and the checks every option passes before any
work starts."""

from __future__ import annotations

from typing import Any

import numpy as np

from samkit.errors import ConfigError

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")

# The paper's and notebooks' settings. Values not named keep the official defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # Official defaults (SamAutomaticMaskGenerator()).
    "default": {},
    # SA-1B fully automatic stage (paper, Appendix B): 32x32 grid plus 2x2 and 4x4 crops with
    # 16x16 and 8x8 grids, IoU > 0.88, stability >= 0.95, NMS 0.7, 100-px cleanup.
    "sa1b": dict(
        points_per_side=32,
        pred_iou_thresh=0.88,
        stability_score_thresh=0.95,
        box_nms_thresh=0.7,
        crop_n_layers=2,
        crop_nms_thresh=0.7,
        crop_n_points_downscale_factor=2,
        min_mask_region_area=100,
    ),
    # AMG notebook, "better for small objects".
    "small_objects": dict(
        points_per_side=32,
        pred_iou_thresh=0.86,
        stability_score_thresh=0.92,
        crop_n_layers=1,
        crop_n_points_downscale_factor=2,
        min_mask_region_area=100,
    ),
    # Object proposals for LVIS (paper, D.3): 64x64 grid, no crops, no filters, NMS 0.9.
    "proposals": dict(
        points_per_side=64,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        box_nms_thresh=0.9,
        crop_n_layers=0,
    ),
    # Edge detection on BSDS500 (paper, D.2): 16x16 grid, no filters, NMS.
    "edges": dict(points_per_side=16, pred_iou_thresh=0.0, stability_score_thresh=0.0),
}


def check_options(o: dict[str, Any]) -> None:
    """Every generator option in range, with a message that says what to use instead."""
    if (o["points_per_side"] is None) == (o["point_grids"] is None):
        raise ConfigError(
            "give exactly one of points_per_side (e.g. 32) or point_grids (one K x 2 array in "
            "[0, 1] per crop layer); set the other to None"
        )
    pps = o["points_per_side"]
    if pps is not None and (not isinstance(pps, (int, np.integer)) or pps < 1):
        raise ConfigError(f"points_per_side must be a positive integer, got {pps!r}")
    if not isinstance(o["points_per_batch"], (int, np.integer)) or o["points_per_batch"] < 1:
        raise ConfigError(f"points_per_batch must be >= 1, got {o['points_per_batch']!r}")
    for name in ("pred_iou_thresh", "stability_score_thresh"):
        v = o[name]
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1] (0 turns the filter off), got {v}")
    for name in ("box_nms_thresh", "crop_nms_thresh"):
        v = o[name]
        if not 0.0 < v <= 1.0:
            raise ConfigError(f"{name} is a box IoU and must be in (0, 1], got {v}")
    if o["stability_score_offset"] <= 0:
        raise ConfigError(
            f"stability_score_offset must be > 0 (logit offset, default 1.0), "
            f"got {o['stability_score_offset']}"
        )
    if not isinstance(o["crop_n_layers"], (int, np.integer)) or o["crop_n_layers"] < 0:
        raise ConfigError(f"crop_n_layers must be an integer >= 0, got {o['crop_n_layers']!r}")
    if not 0.0 <= o["crop_overlap_ratio"] < 1.0:
        raise ConfigError(
            f"crop_overlap_ratio must be in [0, 1) (fraction of the short side), "
            f"got {o['crop_overlap_ratio']}"
        )
    f = o["crop_n_points_downscale_factor"]
    if not isinstance(f, (int, np.integer)) or f < 1:
        raise ConfigError(f"crop_n_points_downscale_factor must be an integer >= 1, got {f!r}")
    if o["min_mask_region_area"] < 0:
        raise ConfigError(f"min_mask_region_area must be >= 0, got {o['min_mask_region_area']}")
    if o["output_mode"] not in OUTPUT_MODES:
        raise ConfigError(
            f"unknown output_mode '{o['output_mode']}'; choose one of {', '.join(OUTPUT_MODES)}"
        )


def check_grids(grids: list[np.ndarray], crop_n_layers: int) -> None:
    """One K x 2 grid in [0, 1] per crop layer, none empty."""
    if len(grids) != crop_n_layers + 1:
        raise ConfigError(
            f"point_grids has {len(grids)} grids but crop_n_layers={crop_n_layers} needs "
            f"{crop_n_layers + 1} (one per layer, the whole image first)"
        )
    for i, g in enumerate(grids):
        if g.ndim != 2 or g.shape[1] != 2:
            raise ConfigError(f"point grid {i} must be K x 2 (x, y) in [0, 1], got {g.shape}")
        if len(g) == 0:
            raise ConfigError(
                f"crop layer {i} gets a grid of 0 points; raise points_per_side or lower "
                "crop_n_layers / crop_n_points_downscale_factor so every layer has >= 1 point"
            )
        if not np.isfinite(g).all() or g.min() < 0 or g.max() > 1:
            raise ConfigError(f"point grid {i} must lie in [0, 1] (fractions of the crop size)")
