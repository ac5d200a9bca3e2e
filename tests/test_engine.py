"""The data engine: one SA-1B JSON per image, nothing lost when killed, faults recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import synthetic_image
from PIL import Image

from samkit.engine import annotate, collect
from samkit.engine.collect import output_names
from samkit.errors import ConfigError

AMG = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)


@pytest.fixture(scope="session")
def engine_model(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    from samkit.checkpoints import save_safetensors
    from samkit.models import SamConfig, build_sam

    torch.manual_seed(0)
    cfg = SamConfig(
        encoder_embed_dim=64,
        encoder_depth=2,
        encoder_num_heads=2,
        encoder_global_attn_indexes=(1,),
        image_size=256,
        window_size=8,
    )
    path = tmp_path_factory.mktemp("engine_model") / "small.safetensors"
    save_safetensors(build_sam(cfg), path)
    return path


def make_collection(root: Path, n: int = 4, corrupt: bool = True) -> Path:
    """n images split over a/ and b/ with clashing stems, plus a corrupt bad.png."""
    for i in range(n):
        d = root / ("a" if i % 2 else "b")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(synthetic_image(64, 80, seed=i)).save(d / f"img{i // 2}.png")
    if corrupt:
        (root / "bad.png").write_bytes(b"this is not a png")
    return root


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, engine_model):  # type: ignore[no-untyped-def]
    """The collection annotated in this process: the outputs the engines must reproduce."""
    tmp = tmp_path_factory.mktemp("ref")
    images = make_collection(tmp / "in")
    summary = annotate(
        images, tmp / "out", model=str(engine_model), workers=0, options=AMG, coco=tmp / "c.json"
    )
    return images, tmp / "out", tmp / "c.json", summary


def read_outputs(out: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}


def assert_same_outputs(got: dict[str, dict], want: dict[str, dict]) -> None:
    """Same images, masks, boxes and areas; scores equal up to float rounding (a different
    number of torch threads sums in another order)."""
    assert sorted(got) == sorted(want)
    for name, rec in want.items():
        assert got[name]["image"] == rec["image"]
        assert len(got[name]["annotations"]) == len(rec["annotations"]), name
        for a, b in zip(got[name]["annotations"], rec["annotations"]):
            for k in ("segmentation", "bbox", "area", "crop_box", "point_coords", "id"):
                assert a[k] == b[k], (name, k)
            for k in ("predicted_iou", "stability_score"):
                assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-5), (name, k)


# -- collection and names ---------------------------------------------------------------------


def test_output_names_are_stems_unless_they_clash() -> None:
    names = output_names(["a/cat.jpg", "b/cat.png", "dog.png", "a/Dog.jpg", "x/bird.png"])
    assert names == ["a__cat_jpg", "b__cat_png", "dog_png", "a__Dog_jpg", "bird"]
    assert output_names(["a/b.png", "a__b_png.jpg", "c/b.png"]) == [
        "a__b_png",
        "a__b_png-2",
        "c__b_png",
    ]


def test_manifest_paths_are_relative_to_the_manifest(tmp_path) -> None:  # type: ignore[no-untyped-def]
    make_collection(tmp_path / "in", corrupt=False)
    manifest = tmp_path / "in" / "list.txt"
    manifest.write_text("# two images\nb/img0.png\n\n" + str(tmp_path / "in/a/img0.png") + "\n")
    items = collect(manifest)
    assert [it.file_name for it in items] == ["a/img0.png", "b/img0.png"]
    assert all(Path(it.path).is_file() for it in items)
    with pytest.raises(ConfigError, match="neither a folder"):
        collect(tmp_path / "missing")


# -- outputs and faults -----------------------------------------------------------------------


def test_every_image_gets_an_sa1b_json_and_a_corrupt_one_is_recorded(reference_run) -> None:  # type: ignore[no-untyped-def]
    from samkit.masks import decode_rle

    _, out, _, summary = reference_run
    outputs = read_outputs(out)
    assert sorted(outputs) == [f"{d}__img{i}_png.json" for d in "ab" for i in range(2)]
    assert summary.annotated == 4 and summary.exit_code == 1
    for rec in outputs.values():
        assert rec["image"]["width"] == 80 and rec["image"]["height"] == 64
        assert rec["annotations"], "thresholds are off, so every image has masks"
        for a in rec["annotations"]:
            m = decode_rle(a["segmentation"])
            assert m.shape == (64, 80) and m.sum() == a["area"]
            assert len(a["bbox"]) == 4 and len(a["crop_box"]) == 4
            assert {"predicted_iou", "stability_score", "point_coords", "id"} <= set(a)
    failed = [json.loads(s) for s in (out / "failed.jsonl").read_text().splitlines()]
    assert len(failed) == 1 and failed[0]["image"] == "bad.png"
    assert "not an image file" in failed[0]["error"]
    assert not list(out.glob(".tmp-*"))


def test_coco_export_holds_every_annotation(reference_run) -> None:  # type: ignore[no-untyped-def]
    _, out, coco_path, _ = reference_run
    coco = json.loads(coco_path.read_text())
    per_image = read_outputs(out)
    assert len(coco["images"]) == 4
    assert len(coco["annotations"]) == sum(len(r["annotations"]) for r in per_image.values())
    ids = {im["id"] for im in coco["images"]}
    assert all(a["image_id"] in ids and a["iscrowd"] == 0 for a in coco["annotations"])
    assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"])


def test_rerun_skips_finished_images_and_retries_failed_ones(tmp_path, engine_model) -> None:  # type: ignore[no-untyped-def]
    images = make_collection(tmp_path / "in", n=2)
    out = tmp_path / "out"
    first = annotate(images, out, model=str(engine_model), workers=0, options=AMG)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    assert first.annotated == 2 and first.failed == 1
    Image.fromarray(synthetic_image(64, 80, seed=9)).save(images / "bad.png")  # repaired
    second = annotate(images, out, model=str(engine_model), workers=0, options=AMG)
    assert (second.skipped, second.annotated, second.failed, second.exit_code) == (2, 1, 0, 0)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.json") if p.name in stamps} == stamps
    assert (out / "bad.json").exists() and not (out / "failed.jsonl").exists()


def test_out_of_memory_retries_with_fewer_points_per_batch(engine_model, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import samkit
    from samkit.automatic import MaskGenerator
    from samkit.engine.modes import Everything

    real = MaskGenerator.generate
    seen = []

    def generate(self, image):  # type: ignore[no-untyped-def]
        seen.append(self.points_per_batch)
        if self.points_per_batch > 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, image)

    monkeypatch.setattr(MaskGenerator, "generate", generate)
    ann = Everything(samkit.load(str(engine_model)), {**AMG, "points_per_batch": 16})
    image = synthetic_image(64, 80)
    assert ann(image, []) and seen == [16, 8, 4]
    ann(image, [])
    assert seen[3:] == [16, 8, 4], "each image starts again from the configured batch"


def test_unloadable_model_stops_the_run_with_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from samkit.errors import SamkitError

    images = make_collection(tmp_path / "in", n=1, corrupt=False)
    with pytest.raises(SamkitError, match="workers could not start"):
        annotate(images, tmp_path / "out", model=str(tmp_path / "nope.safetensors"), workers=0)
    assert not list((tmp_path / "out").glob("*.json"))


# -- modes --------------------------------------------------------------------------------------


def test_boxes_mode_gives_one_mask_per_detection_box(tmp_path, engine_model) -> None:  # type: ignore[no-untyped-def]
    images = make_collection(tmp_path / "in", n=2, corrupt=False)
    dets = {
        "images": [{"id": 7, "file_name": "b/img0.png"}, {"id": 8, "file_name": "img0.png"}],
        "annotations": [
            {"image_id": 7, "bbox": [5, 5, 30, 20], "category_id": 3, "score": 0.9},
            {"image_id": 7, "bbox": [40, 10, 30, 40], "category_id": 4, "score": 0.5},
        ],
        "categories": [{"id": 3, "name": "cat"}, {"id": 4, "name": "dog"}],
    }
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    s = annotate(
        images,
        tmp_path / "out",
        mode="boxes",
        model=str(engine_model),
        workers=0,
        detections=tmp_path / "dets.json",
        coco=tmp_path / "coco.json",
    )
    assert s.exit_code == 0
    anns = json.loads((tmp_path / "out" / "b__img0_png.json").read_text())["annotations"]
    assert [a["category_id"] for a in anns] == [3, 4]
    assert all(0.0 <= a["stability_score"] <= 1.0 and a["crop_box"] == [0, 0, 80, 64] for a in anns)
    assert json.loads((tmp_path / "out" / "a__img0_png.json").read_text())["annotations"] == []
    coco = json.loads((tmp_path / "coco.json").read_text())
    assert [c["name"] for c in coco["categories"]] == ["cat", "dog"]


def test_personalize_mode_segments_the_reference_concept(tmp_path, engine_model) -> None:  # type: ignore[no-untyped-def]
    images = make_collection(tmp_path / "in", n=2, corrupt=False)
    mask = np.zeros((64, 80), np.uint8)
    mask[20:40, 25:55] = 255
    Image.fromarray(mask).save(tmp_path / "ref_mask.png")
    s = annotate(
        images,
        tmp_path / "out",
        mode="personalize",
        model=str(engine_model),
        workers=0,
        ref_image=images / "a" / "img0.png",
        ref_mask=tmp_path / "ref_mask.png",
    )
    assert s.exit_code == 0 and s.annotated == 2
    for rec in read_outputs(tmp_path / "out").values():
        for a in rec["annotations"]:
            assert a["area"] > 0 and a["point_coords"] and a["stability_score"] is None


# -- the local engine, killed and resumed -----------------------------------------------------


def test_a_killed_worker_is_replaced_and_its_images_retried(tmp_path, engine_model) -> None:  # type: ignore[no-untyped-def]
    import multiprocessing

    from samkit.engine.local import run_local
    from samkit.engine.modes import ModeSpec
    from samkit.engine.worker import Task

    items = collect(make_collection(tmp_path / "in", n=3, corrupt=False))
    outcomes = run_local(
        [Task(it) for it in items], ModeSpec("everything", str(engine_model), AMG), 1
    )
    first = next(outcomes)
    for child in multiprocessing.active_children():  # what the kernel's OOM killer would do
        os.kill(child.pid, signal.SIGKILL)
    rest = list(outcomes)
    assert all(o.ok for o in [first, *rest])
    assert sorted(o.item.file_name for o in [first, *rest]) == [it.file_name for it in items]


def cli(images: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "samkit", "annotate", str(images), str(out),
        "--model", str(model), "--points-per-side", "4", "--pred-iou-thresh", "0",
        "--stability-score-thresh", "0", "--no-progress", "--precision", "fp32", *extra,
    ]  # fmt: skip


def test_killed_run_resumes_and_annotates_every_image_exactly_once(
    tmp_path, engine_model, reference_run
) -> None:  # type: ignore[no-untyped-def]
    n = 8
    images = make_collection(tmp_path / "in", n=n, corrupt=False)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        cli(images, out, engine_model, "--workers", "1"), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while len(list(out.glob("*.json"))) < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its worker, mid-run
    proc.wait()
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*.json")}
    assert 2 <= len(before) < n, "killed mid-way"
    for p in out.glob("*.json"):
        json.loads(p.read_text())  # every file that looks finished is complete

    res = subprocess.run(cli(images, out, engine_model, "--workers", "1"), capture_output=True)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("*.json")}
    assert len(after) == n and not list(out.glob(".tmp-*"))
    assert {k: after[k] for k in before} == before, "finished images are not annotated again"
    log = [json.loads(s) for s in (out / "annotate.log.jsonl").read_text().splitlines()]
    resumed = [e["image"] for e in log if e["run"] == log[-1]["run"]]
    finished_first = {json.loads((out / k).read_text())["image"]["file_name"] for k in before}
    assert sorted(resumed) == sorted({it.file_name for it in collect(images)} - finished_first)
    assert b"8 images: " in res.stdout and b"0 failed" in res.stdout
    # Worker processes reproduce the in-process outputs.
    ref = read_outputs(reference_run[1])
    assert_same_outputs({k: v for k, v in read_outputs(out).items() if k in ref}, ref)


def test_cli_exit_code_is_1_when_some_image_failed(tmp_path, engine_model) -> None:  # type: ignore[no-untyped-def]
    from samkit.cli import main

    images = make_collection(tmp_path / "in", n=1)
    code = main(cli(images, tmp_path / "out", engine_model, "--workers", "0")[3:])
    assert code == 1
    assert json.loads((tmp_path / "out" / "failed.jsonl").read_text())["image"] == "bad.png"


def test_precision_is_part_of_the_settings_and_never_mixed(tmp_path, engine_model) -> None:  # type: ignore[no-untyped-def]
    images = make_collection(tmp_path / "in", n=1, corrupt=False)
    opts = {"points_per_side": 2}
    lines: list[str] = []
    annotate(images, tmp_path / "out", model=str(engine_model), workers=0, options=opts,
             device="cpu", precision="fp32", on_start=lines.append)  # fmt: skip
    assert lines and "cpu, fp32" in lines[0]
    rec = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert rec["made_with"]["precision"] == "fp32"
    with pytest.raises(ConfigError, match="precision fp32 -> bf16"):
        annotate(images, tmp_path / "out", model=str(engine_model), workers=0, options=opts,
                 device="cpu", precision="bf16")  # fmt: skip


def test_annotate_exports_yolo_masks_labels_and_polygons(tmp_path, engine_model) -> None:  # type: ignore[no-untyped-def]
    from pycocotools.coco import COCO

    images = make_collection(tmp_path / "in", n=2, corrupt=False)
    out = tmp_path / "out"
    opts = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    annotate(images, out, model=str(engine_model), workers=0, options=opts, device="cpu",
             exports=["yolo", "masks", "png", "polygons"])  # fmt: skip
    names = sorted(p.stem for p in out.glob("*.json") if p.name != "coco_polygons.json")
    assert sorted(p.stem for p in (out / "yolo").glob("*.txt")) == names
    assert sorted(p.stem for p in (out / "labels").glob("*.png")) == names
    for n in names:
        header = (out / "masks" / n / "metadata.csv").read_text().splitlines()[0]
        assert header.startswith("id,area,bbox_x0")
    coco = COCO(str(out / "coco_polygons.json"))
    assert len(coco.getImgIds()) == 2
    assert all(isinstance(a["segmentation"], list) for a in coco.dataset["annotations"])
    with pytest.raises(ConfigError, match="unknown export gif"):
        annotate(images, out, model=str(engine_model), workers=0, exports=["gif"])


def test_recorded_options_include_the_model_recommended_thresholds() -> None:
    from samkit.engine.settings import everything_options

    rec = everything_options({}, "samkit-tiny")
    assert (rec["pred_iou_thresh"], rec["stability_score_thresh"]) == (0.3, 0.5)
    assert everything_options({"preset": "sa1b"}, "samkit-tiny")["pred_iou_thresh"] == 0.88
    assert everything_options({})["pred_iou_thresh"] == 0.88
