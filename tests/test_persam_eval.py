"""The PerSAM paper's evaluations on hand-computed cases: PerSeg (per-class cumulative mIoU, mAcc,
bIoU, reference skipped) and DAVIS 2017 (J, F with the official boundary map, frames 1..T-2)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from samkit.cli import main
from samkit.eval.davis import boundary_f, evaluate_davis, region_j, seg2bmap
from samkit.eval.perseg import evaluate_perseg
from samkit.persam.video_io import save_indexed_png


def perseg_png(mask: np.ndarray, path) -> None:  # type: ignore[no-untyped-def]
    """A PerSeg-style palette PNG: foreground index 1 = (128, 0, 0)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_indexed_png(mask.astype(np.int32), path)


def square(y0: int, x0: int, size: int, shape=(20, 20)) -> np.ndarray:  # type: ignore[no-untyped-def]
    m = np.zeros(shape, bool)
    m[y0 : y0 + size, x0 : x0 + size] = True
    return m


def test_region_j_is_intersection_over_union_without_void():
    pred = np.array([[1, 1, 0, 0]], bool)
    gt = np.array([[0, 1, 1, 1]], bool)
    assert region_j(pred, gt) == 1 / 4
    assert region_j(pred, gt, void=np.array([[0, 0, 0, 1]], bool)) == 1 / 3
    assert region_j(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0


def test_official_boundary_map_of_one_pixel():
    seg = np.zeros((3, 3), bool)
    seg[1, 1] = True
    assert seg2bmap(seg).astype(int).tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 0]]


def test_boundary_f_cases():
    sq = square(5, 5, 8)
    assert boundary_f(sq, sq) == 1.0
    assert boundary_f(np.zeros_like(sq), np.zeros_like(sq)) == 1.0  # absent in both
    assert boundary_f(np.zeros_like(sq), sq) == 0.0  # missed object
    # 20 x 20: the disk radius is ceil(0.008 * 28.3) = 1 pixel, so a 1-pixel shift is on time
    assert boundary_f(square(5, 6, 8), sq) == 1.0
    assert boundary_f(square(5, 9, 8), sq) < 0.6


def test_davis_scores_frames_1_to_t_minus_2_per_object(tmp_path):
    gt, pred = tmp_path / "gt" / "seq", tmp_path / "pred" / "seq"
    gt.mkdir(parents=True)
    pred.mkdir(parents=True)
    first = np.zeros((20, 20), np.int32)
    first[square(2, 2, 5)] = 1
    first[square(12, 12, 5)] = 2
    obj1 = np.zeros((20, 20), np.int32)
    obj1[square(2, 2, 5)] = 1  # object 2 has left the scene
    garbage = np.full((20, 20), 2, np.int32)
    for t, (g, p) in enumerate(
        [(first, garbage), (obj1, obj1), (obj1, np.zeros_like(obj1)), (obj1, garbage)]
    ):
        save_indexed_png(g, gt / f"{t:05d}.png")
        save_indexed_png(p, pred / f"{t:05d}.png")
    res = evaluate_davis(tmp_path / "pred", tmp_path / "gt")
    # object 1: frame 1 perfect, frame 2 missed -> J = F = 0.5; object 2 absent in both -> 1
    assert res["sequences"]["seq"] == {"J": [0.5, 1.0], "F": [0.5, 1.0]}
    assert res["J"] == res["F"] == res["JF"] == 75.0


def test_perseg_sums_per_class_and_skips_the_reference(tmp_path, capsys):
    gt, pred = tmp_path / "Annotations", tmp_path / "pred"
    a4 = square(0, 0, 2)
    perseg_png(a4, gt / "a" / "00.png")
    perseg_png(np.zeros_like(a4), pred / "a" / "00.png")  # the reference: not scored
    perseg_png(a4, gt / "a" / "01.png")
    perseg_png(square(0, 0, 1) | square(1, 1, 1), pred / "a" / "01.png")  # I 2, U 4
    perseg_png(a4, gt / "a" / "02.png")  # no prediction: I 0, U 4
    perseg_png(square(5, 5, 6), gt / "b" / "01.png")
    perseg_png(square(5, 5, 6), pred / "b" / "01.png")
    res = evaluate_perseg(pred, gt)
    assert res["classes"]["a"]["images"] == 2
    np.testing.assert_allclose(res["classes"]["a"]["IoU"], 2 / 8)
    np.testing.assert_allclose(res["classes"]["a"]["Acc"], 2 / 8)
    np.testing.assert_allclose([res["mIoU"], res["mAcc"]], [62.5, 62.5])
    np.testing.assert_allclose(res["classes"]["b"]["bIoU"], 1.0)
    assert main(["eval", "perseg", str(pred), str(gt), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"mIoU", "mAcc", "bIoU"}
    np.testing.assert_allclose(out["mIoU"], 62.5)


def test_cli_eval_davis_json_has_j_f_jf(tmp_path, capsys):
    for root in ("gt", "pred"):
        (tmp_path / root).mkdir()
        for t in range(3):
            Image.fromarray(square(4, 4, 6).astype(np.uint8)).save(tmp_path / root / f"{t}.png")
    assert main(["eval", "davis", str(tmp_path / "pred"), str(tmp_path / "gt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"J": 100.0, "F": 100.0, "JF": 100.0}
