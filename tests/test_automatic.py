"""samkit.MaskGenerator against segment_anything.SamAutomaticMaskGenerator on shared random
weights. Random decoders predict IoUs near 0 and logits near +-2, so the mask logits are
scaled x10 (in both models) and the filters lowered: hundreds of masks get compared."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_image
from official import twin_models
from PIL import Image

from samkit.automatic import MaskGenerator
from samkit.automatic.options import PRESETS
from samkit.errors import ConfigError
from samkit.image_io import load_image
from samkit.masks import decode_rle
from samkit.models import SamConfig

PERSEG = Path(__file__).resolve().parents[2] / "shared/data/perseg-examples/Images"
LOW = dict(pred_iou_thresh=0.05, stability_score_thresh=0.4, box_nms_thresh=1.0)


def _twins(hq: bool = False, seed: int = 0):  # type: ignore[no-untyped-def]
    cfg = SamConfig(
        encoder_embed_dim=64,
        encoder_depth=2,
        encoder_num_heads=2,
        encoder_global_attn_indexes=(1,),
        image_size=256,
        hq=hq,
    )
    off, ours = twin_models(cfg, seed)
    with torch.no_grad():
        for m in (off, ours):
            for mlp in m.mask_decoder.output_hypernetworks_mlps:
                mlp.layers[-1].weight.mul_(10.0)
                mlp.layers[-1].bias.mul_(10.0)
    return off, ours


@pytest.fixture(scope="module")
def twins():  # type: ignore[no-untyped-def]
    return _twins()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    path = PERSEG / "cat/00.jpg"
    if not path.exists():
        pytest.skip(f"real photos not found at {PERSEG} (shared/data/perseg-examples)")
    return np.array(Image.fromarray(load_image(path)).resize((400, 300)))  # non-square


def scene(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    """Colored discs on a gray background."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 200, np.uint8)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(8):
        cy, cx, r = rng.integers(20, h - 20), rng.integers(20, w - 20), rng.integers(10, 40)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 255, 3)
    return img


def official_generate(model, image: np.ndarray, hq: bool = False, **opts):  # type: ignore[no-untyped-def]
    if hq:
        from segment_anything_hq import SamAutomaticMaskGenerator
    else:
        from segment_anything import SamAutomaticMaskGenerator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SamAutomaticMaskGenerator(model, **opts).generate(image)


def _mask(seg) -> np.ndarray:  # type: ignore[no-untyped-def]
    if isinstance(seg, dict):
        if isinstance(seg["counts"], list):
            from segment_anything.utils.amg import rle_to_mask

            return rle_to_mask(seg)
        return decode_rle(seg)
    return np.asarray(seg, dtype=bool)


def assert_same_masks(off: list[dict], ours: list[dict], min_count: int = 1) -> None:
    assert len(ours) == len(off)
    assert len(ours) >= min_count
    for a, b in zip(off, ours):
        ma, mb = _mask(a["segmentation"]), _mask(b["segmentation"])
        iou = (ma & mb).sum() / max(1, (ma | mb).sum())
        assert iou >= 0.99
        assert abs(a["area"] - b["area"]) <= 0.01 * a["area"] + 1
        assert np.abs(np.subtract(a["bbox"], b["bbox"])).max() <= 2
        assert b["predicted_iou"] == pytest.approx(a["predicted_iou"], abs=1e-4)
        assert b["stability_score"] == pytest.approx(a["stability_score"], abs=1e-3)
        np.testing.assert_allclose(b["point_coords"], a["point_coords"])
        assert b["crop_box"] == a["crop_box"]
        assert set(b) == set(a)


@pytest.mark.slow
def test_hundreds_of_masks_match_official_on_non_square_photo(twins, photo) -> None:
    off, ours = twins
    opts = dict(points_per_side=16, output_mode="coco_rle", **LOW)
    assert_same_masks(
        official_generate(off, photo, **opts), MaskGenerator(ours, **opts).generate(photo), 100
    )


def test_masks_match_official_on_generated_scene_with_default_nms(twins) -> None:
    off, ours = twins
    img = scene()
    opts = dict(points_per_side=8, pred_iou_thresh=0.05, stability_score_thresh=0.3)
    assert_same_masks(
        official_generate(off, img, **opts), MaskGenerator(ours, **opts).generate(img)
    )


def test_masks_match_official_with_crop_layers_and_small_region_removal(twins) -> None:
    off, ours = twins
    img = scene(seed=1)
    opts = dict(
        points_per_side=4,
        crop_n_layers=1,
        crop_nms_thresh=1.0,
        min_mask_region_area=400,
        output_mode="uncompressed_rle",
        **LOW,
    )
    expected = official_generate(off, img, **opts)
    got = MaskGenerator(ours, **opts).generate(img)
    assert_same_masks(expected, got, 3)
    assert got[0]["segmentation"]["counts"] == expected[0]["segmentation"]["counts"]


def test_masks_match_official_on_non_square_photo(twins, photo) -> None:
    off, ours = twins
    opts = dict(points_per_side=6, output_mode="coco_rle", **LOW)
    assert_same_masks(
        official_generate(off, photo, **opts), MaskGenerator(ours, **opts).generate(photo), 10
    )


def test_small_region_removal_changes_masks_like_official(twins, photo) -> None:
    off, ours = twins
    opts = dict(points_per_side=6, min_mask_region_area=2000, **LOW)
    expected = official_generate(off, photo, **opts)
    got = MaskGenerator(ours, **opts).generate(photo)
    assert_same_masks(expected, got, 2)


def test_binary_mask_output_matches_official(twins) -> None:
    off, ours = twins
    img = scene(seed=2)
    opts = dict(points_per_side=4, **LOW)
    got = MaskGenerator(ours, **opts).generate(img)
    assert got and got[0]["segmentation"].dtype == bool
    assert got[0]["segmentation"].shape == img.shape[:2]
    assert_same_masks(official_generate(off, img, **opts), got)


def test_no_surviving_mask_with_crop_layers_gives_empty_list(twins) -> None:
    off, ours = twins
    img = scene()
    opts = dict(points_per_side=2, crop_n_layers=1, pred_iou_thresh=0.99)
    with pytest.raises(IndexError):  # the official generator crashes here
        official_generate(off, img, **opts)
    assert MaskGenerator(ours, **opts).generate(img) == []


def test_hq_model_gives_one_mask_per_point_like_official_hq() -> None:
    off, ours = _twins(hq=True)
    img = scene(seed=3)
    opts = dict(
        points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0
    )
    got = MaskGenerator(ours, **opts).generate(img)
    assert len(got) == 36
    assert_same_masks(official_generate(off, img, hq=True, **opts), got, 36)


def test_point_decoder_fast_path_equals_model_decode(twins) -> None:
    from samkit.models.fast_decoder import decode_points
    from samkit.predictor import Predictor

    _, ours = twins
    emb = Predictor(ours).set_image(scene())
    pts = torch.rand(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 200
    with torch.inference_mode():
        low, iou = ours.decode(
            emb.features,
            points=(pts[:, None], torch.ones(5, 1, dtype=torch.int)),
            multimask_output=True,
        )
        d = decode_points(ours, emb.features, pts)
        fast = d.masks(torch.arange(5).repeat_interleave(3), torch.arange(3).repeat(5))
    torch.testing.assert_close(d.iou, iou, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast, low.flatten(0, 1), atol=1e-3, rtol=1e-4)


def test_presets_set_the_papers_options(twins) -> None:
    _, ours = twins
    g = MaskGenerator.from_preset(ours, "sa1b")
    assert (g.crop_n_layers, g.min_mask_region_area) == (2, 100)
    assert [len(p) for p in g.point_grids] == [32 * 32, 16 * 16, 8 * 8]
    g = MaskGenerator.from_preset(ours, "proposals", points_per_side=8)
    assert g.box_nms_thresh == 0.9 and len(g.point_grids[0]) == 64
    assert {"sa1b", "small_objects", "proposals"} <= set(PRESETS)
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        MaskGenerator.from_preset(ours, "huge")


def test_progress_bar_counts_point_batches(twins, capsys) -> None:
    _, ours = twins
    MaskGenerator(ours, points_per_side=4, points_per_batch=5, progress=True).generate(scene())
    err = capsys.readouterr().err
    assert "4/4" in err  # 16 points in batches of 5


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (dict(points_per_side=0), "points_per_side must be a positive integer"),
        (dict(points_per_side=None), "exactly one of points_per_side"),
        (dict(point_grids=[np.zeros((4, 2))]), "exactly one of points_per_side"),
        (dict(points_per_side=None, point_grids=[np.zeros((0, 2))]), "grid of 0 points"),
        (dict(points_per_side=2, crop_n_layers=2, crop_n_points_downscale_factor=2), "0 points"),
        (dict(pred_iou_thresh=1.5), r"pred_iou_thresh must be in \[0, 1\]"),
        (dict(stability_score_thresh=-0.1), r"stability_score_thresh must be in \[0, 1\]"),
        (dict(box_nms_thresh=0), "box_nms_thresh is a box IoU"),
        (dict(crop_overlap_ratio=1.0), "crop_overlap_ratio must be in"),
        (dict(crop_n_layers=-1), "crop_n_layers must be an integer >= 0"),
        (dict(output_mode="png"), "unknown output_mode 'png'"),
        (dict(points_per_side=None, point_grids=[np.zeros((4, 2))], crop_n_layers=1), "needs 2"),
    ],
)
def test_bad_options_give_clear_errors(twins, opts, message) -> None:
    _, ours = twins
    with pytest.raises(ConfigError, match=message):
        MaskGenerator(ours, **opts)


# -- CLI ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_file(twins, tmp_path_factory) -> Path:
    from samkit.checkpoints import save_safetensors

    path = tmp_path_factory.mktemp("model") / "small.safetensors"
    save_safetensors(twins[1], path)
    return path


def test_cli_everything_writes_sa1b_json_and_overlay(model_file, tmp_path) -> None:
    from samkit.cli import main

    img = tmp_path / "scene.png"
    Image.fromarray(scene()).save(img)
    out, ov = tmp_path / "anns.json", tmp_path / "overlay.png"
    rc = main(
        [
            "everything",
            str(img),
            "-o",
            str(out),
            "--overlay",
            str(ov),
            "--model",
            str(model_file),
            "--points-per-side",
            "4",
            "--preset",
            "proposals",
        ]
    )
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["image"]["width"] == 320 and doc["image"]["height"] == 240
    assert len(doc["annotations"]) >= 1
    a = doc["annotations"][0]
    assert {
        "id",
        "segmentation",
        "bbox",
        "area",
        "predicted_iou",
        "stability_score",
        "crop_box",
        "point_coords",
    } <= set(a)
    assert decode_rle(a["segmentation"]).sum() == a["area"]
    assert Image.open(ov).size == (320, 240)


def test_cli_everything_png_format_writes_label_map(model_file, tmp_path) -> None:
    from samkit.cli import main

    img = tmp_path / "scene.png"
    Image.fromarray(scene()).save(img)
    out = tmp_path / "labels.png"
    rc = main(
        [
            "everything",
            str(img),
            "-o",
            str(out),
            "--format",
            "png",
            "--model",
            str(model_file),
            "--points-per-side",
            "4",
            "--preset",
            "proposals",
        ]
    )
    assert rc == 0
    labels = np.array(Image.open(out))
    assert labels.shape == (240, 320) and labels.max() >= 1


def test_cli_everything_bad_option_exits_2_with_message(model_file, tmp_path, capsys) -> None:
    from samkit.cli import main

    img = tmp_path / "scene.png"
    Image.fromarray(scene()).save(img)
    rc = main(
        [
            "everything",
            str(img),
            "-o",
            str(tmp_path / "a.json"),
            "--model",
            str(model_file),
            "--points-per-side",
            "0",
        ]
    )
    assert rc == 2
    assert "points_per_side must be a positive integer" in capsys.readouterr().err


def test_precomputed_embedding_gives_the_same_masks(twins) -> None:  # type: ignore[no-untyped-def]
    from samkit.predictor import Predictor

    _, ours = twins
    image = synthetic_image(200, 300, seed=5)
    emb = Predictor(ours).set_image(image)
    gen = MaskGenerator(ours, points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0)
    a, b = gen.generate(image), gen.generate(image, embedding=emb)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert (x["segmentation"] == y["segmentation"]).all()
    with pytest.raises(ConfigError, match="pass the same image"):
        gen.generate(synthetic_image(100, 300, seed=5), embedding=emb)


def test_boxes_are_the_extremes_of_the_mask_pixels() -> None:
    from samkit.masks import masks_to_boxes

    rng = np.random.default_rng(0)
    masks = np.zeros((6, 37, 53), dtype=bool)
    for i in range(5):  # mask 5 stays empty
        y0, x0 = rng.integers(0, 30), rng.integers(0, 45)
        masks[i, y0 : y0 + rng.integers(1, 8), x0 : x0 + rng.integers(1, 9)] = True
    masks[0, 36, 52] = True  # touches the far corner
    want = np.zeros((6, 4), dtype=np.int64)  # brute force: extremes of the True pixels
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if len(ys):
            want[i] = [xs.min(), ys.min(), xs.max(), ys.max()]
    got = masks_to_boxes(masks)
    assert (masks_to_boxes(torch.from_numpy(masks)).numpy() == want).all()
    assert got.dtype == np.int64 and (got == want).all()
    assert (got[5] == 0).all()


def test_model_recommended_settings_sit_beneath_the_preset(twins) -> None:
    ours = twins[1]
    ours.generator_defaults = {"pred_iou_thresh": 0.5, "stability_score_thresh": 0.6}
    try:
        gen = MaskGenerator.from_preset(ours, "default")
        assert (gen.pred_iou_thresh, gen.stability_score_thresh) == (0.5, 0.6)
        gen = MaskGenerator.from_preset(ours, "sa1b")  # the preset's own values win
        assert (gen.pred_iou_thresh, gen.stability_score_thresh) == (0.88, 0.95)
        gen = MaskGenerator.from_preset(ours, "default", pred_iou_thresh=0.1)
        assert gen.pred_iou_thresh == 0.1
        assert MaskGenerator(ours).pred_iou_thresh == 0.88  # the official class's defaults
    finally:
        ours.generator_defaults = {}


def test_everything_with_no_mask_says_which_thresholds_to_lower(model_file, tmp_path, capsys):  # type: ignore[no-untyped-def]
    from samkit.cli import main

    img = tmp_path / "scene.png"
    Image.fromarray(scene()).save(img)
    rc = main(["everything", str(img), "-o", str(tmp_path / "a.json"), "--model", str(model_file),
               "--points-per-side", "2", "--pred-iou-thresh", "1.0",
               "--stability-score-thresh", "1.0", "--no-progress"])  # fmt: skip
    assert rc == 0
    err = capsys.readouterr().err
    assert "no mask passed the filters (pred_iou_thresh 1.0" in err and "--pred-iou-thresh" in err
