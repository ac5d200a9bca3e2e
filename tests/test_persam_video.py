"""PerSAM video object segmentation: the official persam_video(_f) algorithm (faithful, quirks
kept) and the fixed default, on a small synthetic video; the DAVIS layout in and out."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import samkit
from samkit.cli import main
from samkit.data.synthetic import SceneGenerator
from samkit.persam.track import PerSAMVideo
from samkit.persam.video_io import davis_palette, read_label_png, save_indexed_png

FRAMES = 4


@pytest.fixture(scope="module")
def model():
    return samkit.load("samkit-tiny", precision="fp32")


@pytest.fixture(scope="module")
def video():
    """A camera pan over one scene: frames (160 x 160) and the first frame's label map with the
    scene's two largest whole objects as labels 1 and 2."""
    scene = SceneGenerator(seed=3, size=160, n_objects=(2, 3), scale=(0.7, 0.9)).scene(0)
    wholes = scene.masks[scene.kinds == 0]
    order = np.argsort([-m.sum() for m in wholes])[:2]
    labels = np.zeros((160, 160), np.int32)
    for k, i in enumerate(order, 1):
        labels[wholes[i]] = k
    frames = [np.roll(scene.image, 3 * t, axis=1) for t in range(FRAMES)]
    return frames, labels


@pytest.mark.parametrize("faithful", [False, True], ids=["fixed", "faithful"])
def test_track_yields_one_label_map_per_frame_with_the_first_frames_labels(model, video, faithful):
    frames, labels = video
    out = list(PerSAMVideo(model, faithful=faithful).track(frames, labels))
    assert len(out) == FRAMES
    assert np.array_equal(out[0], labels)
    for lab in out[1:]:
        assert lab.shape == (160, 160) and set(np.unique(lab)) <= {0, 1, 2}


def test_fine_tuned_video_variant_fits_weights_per_object(model, video):
    frames, labels = video
    tracker = PerSAMVideo(model, finetune=True, steps=20)
    out = list(tracker.track(frames[:2], labels))
    assert len(out) == 2 and set(np.unique(out[1])) <= {0, 1, 2}


def test_box_prompt_is_clamped_past_the_image_only_when_faithful(model, video):
    frames, labels = video
    prev = np.zeros((160, 160), bool)
    prev[100:159, 120:160] = True  # touches the right border
    for faithful, right in ((True, 160), (False, 159)):
        tracker = PerSAMVideo(model, faithful=faithful)
        emb = tracker._embed(frames[0])
        obj = tracker._fit_object(emb, labels == 1, 1)
        pts, lbl, box = tracker._prompts(emb, obj.feat, prev)
        assert box.tolist() == [110, 90, right, right]
        assert pts[-1].tolist() == [139, 129]  # the previous box's centre, a positive point
        assert len(pts) == 3 and lbl.tolist() == [1, 1, 1]  # top-2 similarity + centre


def test_faithful_pairs_boxes_by_position_and_drops_objects_after_one_vanishes(model, video):
    frames, labels = video
    for faithful in (True, False):
        tracker = PerSAMVideo(model, faithful=faithful)
        emb = tracker._embed(frames[0])
        objects = [tracker._fit_object(emb, labels == k, k) for k in (1, 2)]
        prev = [labels == 2] if faithful else [labels == 1, labels == 2]
        out, _ = tracker._step(tracker._embed(frames[1]), objects, prev)
        if faithful:  # one box left: only object 1 is segmented, with object 2's box
            assert 2 not in np.unique(out)
        else:
            assert np.isin(np.unique(out), [0, 1, 2]).all()


def test_indexed_png_round_trip_keeps_labels_and_davis_palette(tmp_path):
    labels = np.array([[0, 1], [2, 3]], np.int32)
    save_indexed_png(labels, tmp_path / "a.png")
    im = Image.open(tmp_path / "a.png")
    assert im.mode == "P" and im.getpalette()[:9] == [0, 0, 0, 128, 0, 0, 0, 128, 0]
    assert read_label_png(tmp_path / "a.png").tolist() == [[0, 1], [2, 3]]
    assert davis_palette()[3:6] == [128, 0, 0]


def test_cli_personalize_video_writes_davis_layout_and_an_overlay(tmp_path, video, capsys):
    frames, labels = video
    (tmp_path / "frames").mkdir()
    for t, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / "frames" / f"{t:05d}.jpg")
    save_indexed_png(labels, tmp_path / "first.png")
    args = ["personalize-video", str(tmp_path / "frames"), "--ref-mask"]
    args += [str(tmp_path / "first.png"), "-o", str(tmp_path / "out"), "--model", "samkit-tiny"]
    assert main(args) == 0
    written = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert written == [f"{t:05d}.png" for t in range(FRAMES)]
    assert Image.open(tmp_path / "out" / "00001.png").mode == "P"
    gif = Image.open(tmp_path / "out" / "overlay.gif")
    assert gif.n_frames == FRAMES
    assert "objects [1, 2]" in capsys.readouterr().out
