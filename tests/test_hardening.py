"""Hostile and careless inputs (issue 16): every request's work is bounded and checked before it
starts, small inputs cannot take gigabytes, limits say what they are and how to raise them, the
data engine never mixes results made with other settings, and every CLI error is one line."""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import synthetic_image
from PIL import Image
from test_server_api import app_server, png_file, request, tiny_model_file, upload

from samkit.errors import CheckpointError, ConfigError, ImageError, PixelLimitError
from samkit.image_io import check_pixels, load_image, load_mask, read_size

IMG = synthetic_image(120, 160, seed=3)


def big_png(path: Path, w: int, h: int) -> Path:
    """A large image in a small file (1-bit, blank): a decompression bomb in miniature."""
    Image.new("1", (w, h)).save(path)
    return path


# -- the server, real uvicorn in this process (so a test can hold its locks) -----------------


LIMITS = dict(max_points=100, max_everything_mpix=1, max_mask_mpix=5)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, object, str]]:
    folder = tmp_path_factory.mktemp("hardening-server")
    with app_server(folder, **LIMITS) as (url, ws):
        status, info = upload(url, png_file(IMG))
        assert status == 201, info
        yield url, ws, info["id"]


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the server decodes while a test runs (PIL pixel loads, RLE decodes): a refusal
    "before decoding" leaves it empty. No timings: the proof is that nothing was decoded."""
    from PIL import ImageFile

    import samkit.server.schemas as schemas

    seen: list[str] = []
    load, rle = ImageFile.ImageFile.load, schemas.decode_rle

    def spy_load(im):  # type: ignore[no-untyped-def]
        seen.append(f"image {im.size}")
        return load(im)

    def spy_rle(r):  # type: ignore[no-untyped-def]
        seen.append(f"rle {r.get('size')}")
        return rle(r)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    monkeypatch.setattr(schemas, "decode_rle", spy_rle)
    return seen


def test_prompt_with_too_many_points_is_refused_before_any_work(served) -> None:  # type: ignore[no-untyped-def]
    url, ws, image_id = served
    body = {"points": [[5.0, 5.0]] * 10_000, "labels": [1] * 10_000}
    with ws.lock:  # the model is busy: a refusal must not need it
        status, err = request("POST", f"{url}/api/images/{image_id}/predict", body)
    assert status == 413
    assert "10000 points" in err["detail"] and "at most 100" in err["detail"]
    assert "--max-points" in err["detail"]
    body = {"points": [[5.0, 5.0]] * 100, "labels": [1] * 100}
    assert request("POST", f"{url}/api/images/{image_id}/predict", body)[0] == 200


def test_everything_over_the_work_limit_is_refused_before_any_work(served) -> None:  # type: ignore[no-untyped-def]
    url, ws, image_id = served
    with ws.heavy, ws.lock:
        status, err = request(
            "POST", f"{url}/api/images/{image_id}/everything", {"points_per_side": 16}
        )
    assert status == 413
    # 16 x 16 points x 3 masks x 160 x 120 pixels = 14.7 million mask pixels, limit 1 million
    assert "15 million mask pixels" in err["detail"] and "limit of 1" in err["detail"]
    for name in ("points_per_side", "at most 4 fits", "crop_n_layers", "--max-everything-mpix"):
        assert name in err["detail"]
    ok = {"points_per_side": 2, "pred_iou_thresh": 0, "stability_score_thresh": 0}
    assert request("POST", f"{url}/api/images/{image_id}/everything", ok)[0] == 200


def test_prompts_are_answered_while_a_long_job_holds_the_model(served) -> None:  # type: ignore[no-untyped-def]
    """Everything mode and PerSAM run under their own lock: a long one delays neither clicks nor
    health, and waits its turn itself."""
    url, ws, image_id = served
    done: list[int] = []
    body = {"points_per_side": 2}
    job = threading.Thread(
        target=lambda: done.append(
            request("POST", f"{url}/api/images/{image_id}/everything", body)[0]
        )
    )
    with ws.heavy:  # as if an everything run were taking minutes
        job.start()
        point = {"points": [[80, 60]], "labels": [1]}
        status, _ = request("POST", f"{url}/api/images/{image_id}/predict", point)
        assert status == 200
        time.sleep(0.5)
        assert not done, "the second long job waits for the first"
    job.join(60)
    assert done == [200]


def test_health_answers_while_queued_requests_fill_the_thread_pool(served) -> None:  # type: ignore[no-untyped-def]
    url, ws, image_id = served
    statuses: list[int] = []
    point = {"points": [[80, 60]], "labels": [1], "multimask": False}

    def client() -> None:
        statuses.append(request("POST", f"{url}/api/images/{image_id}/predict", point)[0])

    clients = [threading.Thread(target=client) for _ in range(48)]  # > anyio's 40 threads
    with ws.lock:
        for c in clients:
            c.start()
        time.sleep(2)  # all of them are in (or queued for) the thread pool now
        status, health = request("GET", f"{url}/api/health")
        assert status == 200
        assert health["limits"]["max_points"] == 100
        assert health["limits"]["max_pixels"] == 200_000_000
    for c in clients:
        c.join(120)
    assert statuses == [200] * 48


def test_concurrent_decodes_are_bounded(served) -> None:  # type: ignore[no-untyped-def]
    url, ws, _ = served
    result: list[int] = []
    job = threading.Thread(target=lambda: result.append(upload(url, png_file(IMG))[0]))
    ws.decode_slots.acquire()
    ws.decode_slots.acquire()  # both slots busy (default --decode-slots 2)
    try:
        job.start()
        time.sleep(1.5)
        assert not result, "a third upload waits for a free decode slot"
    finally:
        ws.decode_slots.release()
        ws.decode_slots.release()
    job.join(60)
    assert result == [201]


def test_image_over_the_pixel_limit_is_refused_from_its_header(
    served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, decoded: list[str]
) -> None:  # type: ignore[no-untyped-def]
    url, ws, _ = served
    data = big_png(tmp_path / "bomb.png", 9000, 9000).read_bytes()
    assert len(data) < 100_000  # 81 megapixels in a few kilobytes
    monkeypatch.setenv("SAMKIT_MAX_PIXELS", "50000000")  # read per call: no restart needed
    before = request("GET", f"{url}/api/images")[1]["images"]
    status, err = upload(url, data)
    assert status == 413 and not decoded, f"refused after decoding: {decoded}"
    assert "81.0 megapixels" in err["detail"] and "SAMKIT_MAX_PIXELS" in err["detail"]
    assert "/" not in err["detail"].split("megapixels")[0], "no server path in the message"
    assert request("GET", f"{url}/api/images")[1]["images"] == before


def test_masks_of_another_size_are_refused_before_they_are_decoded(
    served, tmp_path: Path, decoded: list[str]
) -> None:  # type: ignore[no-untyped-def]
    url, _, image_id = served
    rle = {"size": [20000, 20000], "counts": [400_000_000]}  # 760 MB if it were decoded
    body = {"image_id": image_id, "mask": {"rle": rle}}
    status, err = request("POST", f"{url}/api/export/png", body)
    assert status == 422 and not decoded, f"refused after decoding: {decoded}"
    assert "20000x20000" in err["detail"] and "160x120" in err["detail"]
    png = base64.b64encode(big_png(tmp_path / "m.png", 13000, 13000).read_bytes()).decode()
    body = {"image_id": image_id, "mask": {"png": png}}
    status, err = request("POST", f"{url}/api/references", body)
    assert status == 422 and "13000x13000" in err["detail"]
    assert not decoded, f"refused after decoding: {decoded}"
    bad = {"size": [120, 160], "counts": [5, 7]}  # runs that do not cover the image
    status, err = request(
        "POST", f"{url}/api/export/png", {"image_id": image_id, "mask": {"rle": bad}}
    )
    assert status == 422 and "19200" in err["detail"]


def test_export_of_too_many_mask_pixels_is_refused(served) -> None:  # type: ignore[no-untyped-def]
    url, _, image_id = served
    empty = {"rle": {"size": [120, 160], "counts": [120 * 160]}}
    item = {"image_id": image_id, "masks": [empty] * 300}  # 300 x 19200 = 5.8 million pixels
    status, err = request("POST", f"{url}/api/export/coco", {"items": [item]})
    assert status == 413
    assert "--max-mask-mpix" in err["detail"] and "limit of 5" in err["detail"]
    item["masks"] = [empty] * 10
    assert request("POST", f"{url}/api/export/coco", {"items": [item]})[0] == 200


def test_too_elongated_image_is_refused_at_upload_and_never_stored(served) -> None:  # type: ignore[no-untyped-def]
    url, _, _ = served
    before = request("GET", f"{url}/api/images")[1]["images"]
    status, err = upload(url, png_file(synthetic_image(20, 20000)))
    assert status == 422, err
    assert "20000x20" in err["detail"] and "at most 512:1" in err["detail"]
    assert request("GET", f"{url}/api/images")[1]["images"] == before
    status, info = upload(url, png_file(synthetic_image(20, 4000)))  # 200:1 is fine
    assert status == 201, info
    point = {"points": [[2000, 10]], "labels": [1]}
    assert request("POST", f"{url}/api/images/{info['id']}/predict", point)[0] == 200


@pytest.mark.parametrize(
    "path, body",
    [
        ("predict", {"points": [[float("nan"), 5.0]], "labels": [1]}),
        ("predict", {"box": [0, 0, float("inf"), 10]}),
        ("everything", {"pred_iou_thresh": float("nan")}),
    ],
)
def test_nan_and_infinity_are_refused_with_422(served, path: str, body: dict) -> None:  # type: ignore[no-untyped-def]
    url, _, image_id = served
    status, err = request("POST", f"{url}/api/images/{image_id}/{path}", body)
    assert status == 422, err
    assert isinstance(err["detail"], str) and "finite number" in err["detail"]


def test_coco_export_refuses_nan_scores(served) -> None:  # type: ignore[no-untyped-def]
    url, _, image_id = served
    from samkit.masks import encode_rle

    m = np.zeros((120, 160), bool)
    m[10:20, 10:20] = True
    item = {"image_id": image_id, "masks": [{"rle": encode_rle(m)[0]}], "scores": [float("nan")]}
    status, err = request("POST", f"{url}/api/export/coco", {"items": [item]})
    assert status == 422 and "scores" in err["detail"]


def test_uploads_in_formats_outside_the_list_are_refused(served) -> None:  # type: ignore[no-untyped-def]
    url, _, _ = served
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"
    status, err = upload(url, eps, name="drawing.eps")
    assert status == 415 and "PNG" in err["detail"], err  # never reaches Ghostscript
    gif = io.BytesIO()
    Image.fromarray(IMG).save(gif, format="GIF")
    assert upload(url, gif.getvalue(), name="a.gif")[0] == 415


def test_uploads_stop_at_the_store_limit_with_a_message(tmp_path: Path) -> None:
    data = png_file(IMG)
    with app_server(tmp_path, max_store_bytes=int(1.5 * len(data))) as (url, _):
        status, first = upload(url, data)
        assert status == 201
        status, err = upload(url, data)
        assert status == 507 and "--max-store-mb" in err["detail"]
        assert request("DELETE", f"{url}/api/images/{first['id']}")[0] == 204
        assert upload(url, data)[0] == 201


# -- one pixel limit, honoured by every reader ------------------------------------------------


def test_pixel_limit_is_200_megapixels_by_default_not_pils(tmp_path: Path) -> None:
    path = big_png(tmp_path / "95mp.png", 10_000, 9_500)  # over PIL's 89.5 MP default
    check_pixels(path)
    assert read_size(path) == (9_500, 10_000)
    assert Image.MAX_IMAGE_PIXELS == 200_000_000, "PIL's limit is kept equal to ours"


def test_pixel_limit_is_read_when_an_image_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "small.png"
    Image.fromarray(IMG).save(path)
    monkeypatch.setenv("SAMKIT_MAX_PIXELS", "10000")  # after samkit was imported
    with pytest.raises(PixelLimitError, match="0.0192 megapixels|above the limit of 0.01"):
        load_image(path)
    monkeypatch.setenv("SAMKIT_MAX_PIXELS", "lots")
    with pytest.raises(ConfigError, match="SAMKIT_MAX_PIXELS must be a positive"):
        load_image(path)


def test_personalize_checks_every_image_against_the_limit_before_the_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from samkit.cli import main

    small = tmp_path / "ref.png"
    Image.fromarray(IMG).save(small)
    big = big_png(tmp_path / "target.png", 400, 300)
    monkeypatch.setenv("SAMKIT_MAX_PIXELS", "100000")
    args = ["personalize", "--ref", str(small), "--ref-mask", str(small), str(big)]
    args += ["-o", str(tmp_path / "out"), "--model", str(tmp_path / "no-such-model.pth")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "target.png" in err and "SAMKIT_MAX_PIXELS" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists(), "nothing written"


def test_missing_mask_and_symlink_loops_get_their_own_messages(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="mask file not found"):
        load_mask(tmp_path / "missing.png")
    loop = tmp_path / "loop.png"
    os.symlink(loop, loop)
    with pytest.raises(ImageError, match="loops back on itself"):
        load_image(loop)


def test_mask_of_another_size_is_refused_from_its_header(tmp_path: Path) -> None:
    path = big_png(tmp_path / "m.png", 13000, 13000)
    with pytest.raises(ImageError, match="13000x13000 .* does not match the image size 160x120"):
        load_mask(path, size=(120, 160))


def test_only_the_listed_formats_are_decoded(tmp_path: Path) -> None:
    (tmp_path / "x.eps").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    with pytest.raises(ImageError, match="not an image file samkit reads .*PNG"):
        load_image(tmp_path / "x.eps")


# -- checkpoints --------------------------------------------------------------------------------


def test_bad_samkit_config_metadata_is_refused_before_any_tensor_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import safetensors.torch
    from safetensors.torch import load_file, save_file

    from samkit.checkpoints import read_state_dict

    src = tiny_model_file(tmp_path)
    state = load_file(str(src))
    good = json.loads(safetensors.safe_open(str(src), "pt").metadata()["samkit_config"])
    cases = {
        "huge": ({**good, "encoder_embed_dim": 4096}, "needs shape"),
        "deep": ({**good, "encoder_depth": 48}, "encoder_depth=48"),
        "missing": ({"image_size": 256}, "not a valid configuration"),
        "typed": ({**good, "image_size": "big"}, "not a valid configuration"),
    }
    for name, (cfg, _) in cases.items():
        save_file(state, str(tmp_path / f"{name}.safetensors"), {"samkit_config": json.dumps(cfg)})
    (tmp_path / "nojson.safetensors").write_bytes(
        (tmp_path / "huge.safetensors").read_bytes().replace(b"4096", b"{{{{", 1)
    )

    def never(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("tensors were read before the metadata was checked")

    monkeypatch.setattr(safetensors.torch, "load_file", never)
    for name, (_, message) in cases.items():
        with pytest.raises(CheckpointError, match=message):
            read_state_dict(tmp_path / f"{name}.safetensors")
    with pytest.raises(CheckpointError, match="samkit_config"):
        read_state_dict(tmp_path / "nojson.safetensors")
    header = tmp_path / "lying.safetensors"
    header.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(CheckpointError, match="header claims"):
        read_state_dict(header)


@pytest.mark.parametrize(
    "content", [np.random.default_rng(0).bytes(1000), b"hello, this is a text file\n"]
)
def test_bytes_that_are_not_a_checkpoint_are_called_so(tmp_path: Path, content: bytes) -> None:
    import samkit

    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint") as e:
        samkit.load(path)
    assert "pickled code" not in str(e.value)


# -- the command line: outputs checked first, one line, exit 2 ---------------------------------


@pytest.fixture()
def image_file(tmp_path: Path) -> Path:
    p = tmp_path / "img.png"
    Image.fromarray(IMG).save(p)
    return p


def one_line_error(capsys: pytest.CaptureFixture, *needles: str) -> str:
    # "samkit: MODEL on cpu, bf16 (...)" says what the command chose: information, not an error.
    lines = capsys.readouterr().err.splitlines(keepends=True)
    err = "".join(line for line in lines if not line.startswith("samkit: "))
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


def read_only_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write in (root ignores permission bits: use /sys)."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def test_segment_outputs_are_checked_before_the_model_runs(
    tmp_path: Path, image_file: Path, capsys: pytest.CaptureFixture
) -> None:
    from samkit.cli import main

    # A model that does not exist: an output error proves the output was checked first.
    base = ["segment", str(image_file), "--point", "10,10", "--model", "no-such.pth"]
    cases = {
        str(tmp_path / "missing" / "m.png"): "does not exist",
        str(tmp_path / "m"): "ending in .png",
        str(tmp_path / "m.txt"): "ending in .png",
        str(tmp_path / "m.jpg"): "ending in .png",  # no lossy JPEG masks
        str(read_only_folder(tmp_path) / "m.png"): "not writable",
        str(tmp_path): "ending in .png",
    }
    for out, message in cases.items():
        assert main([*base, "-o", out]) == 2
        one_line_error(capsys, message)
    assert main([*base, "-o", str(tmp_path / "m.png"), "--overlay", str(tmp_path / "o.eps")]) == 2
    one_line_error(capsys, "overlay")
    assert not list(tmp_path.glob("m*")), "nothing written"


def test_everything_and_annotate_outputs_are_checked_first(
    tmp_path: Path, image_file: Path, capsys: pytest.CaptureFixture
) -> None:
    from samkit.cli import main

    model = ["--model", "no-such.pth"]
    assert main(["everything", str(image_file), "-o", str(tmp_path / "a.png"), *model]) == 2
    one_line_error(capsys, "ending in .json")
    out = str(tmp_path / "labels.json")
    assert main(["everything", str(image_file), "--format", "png", "-o", out, *model]) == 2
    one_line_error(capsys, "ending in .png")
    (tmp_path / "file").write_text("x")
    assert main(["annotate", str(tmp_path), str(tmp_path / "file"), *model]) == 2
    one_line_error(capsys, "not a folder")
    ro = read_only_folder(tmp_path)
    assert main(["annotate", str(tmp_path), str(ro / "out"), *model]) == 2
    one_line_error(capsys, "not writable")


def test_model_that_is_not_a_checkpoint_is_one_line(
    tmp_path: Path, image_file: Path, capsys: pytest.CaptureFixture
) -> None:
    from samkit.cli import main

    notes = tmp_path / "notes.txt"
    notes.write_text("not a model\n")
    args = ["segment", str(image_file), "--point", "10,10", "-o", str(tmp_path / "m.png")]
    assert main([*args, "--model", str(notes)]) == 2
    one_line_error(capsys, "not a PyTorch checkpoint")


def test_too_elongated_image_is_one_line_in_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from samkit.cli import main

    wide = tmp_path / "wide.png"
    Image.fromarray(synthetic_image(20, 20000)).save(wide)
    model = str(tiny_model_file(tmp_path))
    args = ["segment", str(wide), "--point", "10,10", "-o", str(tmp_path / "m.png")]
    assert main([*args, "--model", model]) == 2
    one_line_error(capsys, "20000x20", "too elongated", "at most 512:1")


# -- the data engine: results record how they were made, reruns never mix ----------------------

AMG = dict(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0)


@pytest.fixture(scope="module")
def engine_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_file(tmp_path_factory.mktemp("engine-model"))


def collection(root: Path, n: int = 2) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(synthetic_image(40, 50, seed=i)).save(root / f"im{i}.png")
    return root


def keys(out: Path) -> set[str]:
    return {json.loads(p.read_text())["made_with"]["key"] for p in out.glob("*.json")}


def test_results_record_the_model_and_options(tmp_path: Path, engine_model: Path) -> None:
    from samkit.engine import annotate
    from samkit.engine.settings import model_sha256

    images = collection(tmp_path / "in")
    annotate(images, tmp_path / "out", model=str(engine_model), workers=0, options=AMG,
             coco=tmp_path / "c.json")  # fmt: skip
    rec = json.loads((tmp_path / "out" / "im0.json").read_text())
    assert list(rec) == ["made_with", "image", "annotations"]
    made = rec["made_with"]
    assert made["mode"] == "everything" and made["model"] == str(engine_model)
    assert made["model_sha256"] == model_sha256(str(engine_model))
    assert made["options"]["points_per_side"] == 2 and made["options"]["box_nms_thresh"] == 0.7
    assert "points_per_batch" not in made["options"]
    assert json.loads((tmp_path / "c.json").read_text())["info"]["made_with"] == made


def test_rerun_with_other_options_stops_naming_the_difference(
    tmp_path: Path, engine_model: Path
) -> None:
    from samkit.engine import annotate

    images, out = collection(tmp_path / "in"), tmp_path / "out"
    run = dict(model=str(engine_model), workers=0)
    annotate(images, out, options=AMG, **run)
    first = keys(out)
    with pytest.raises(ConfigError, match="points_per_side 2 -> 3.*new output folder.*--force"):
        annotate(images, out, options={**AMG, "points_per_side": 3}, **run)
    assert keys(out) == first, "nothing touched"
    # The same settings spelled otherwise are the same settings.
    s = annotate(images, out, options={**AMG, "preset": "default", "points_per_batch": 7}, **run)
    assert (s.skipped, s.annotated) == (2, 0)
    s = annotate(images, out, options={**AMG, "points_per_side": 3}, force=True, **run)
    assert (s.skipped, s.annotated) == (0, 2)
    assert len(keys(out)) == 1 and keys(out) != first


def test_rerun_with_another_model_stops(tmp_path: Path, engine_model: Path) -> None:
    import shutil

    from samkit.checkpoints import save_safetensors
    from samkit.engine import annotate
    from samkit.models import build_sam

    images, out = collection(tmp_path / "in", n=1), tmp_path / "out"
    annotate(images, out, model=str(engine_model), workers=0, options=AMG)
    other = tmp_path / "other.safetensors"
    save_safetensors(build_sam(_config_of(engine_model)), other)  # new random weights
    with pytest.raises(ConfigError, match="model .* -> .*other.safetensors"):
        annotate(images, out, model=str(other), workers=0, options=AMG)
    # Same path, retrained weights: still another model.
    same_path = tmp_path / "model.safetensors"
    shutil.copy(engine_model, same_path)
    out2 = tmp_path / "out2"
    annotate(images, out2, model=str(same_path), workers=0, options=AMG)
    shutil.copy(other, same_path)
    with pytest.raises(ConfigError, match="its weights changed"):
        annotate(images, out2, model=str(same_path), workers=0, options=AMG)


def _config_of(path: Path):  # type: ignore[no-untyped-def]
    import samkit

    return samkit.load(path).config


def test_killed_run_resumed_with_other_options_never_mixes(
    tmp_path: Path, engine_model: Path, capsys: pytest.CaptureFixture
) -> None:
    """A run killed after some images, resumed with other options: refused (exit 2) until
    --force, which recomputes every result, so the folder holds one setting only."""
    from samkit.cli import main

    images, out = collection(tmp_path / "in", n=3), tmp_path / "out"
    base = ["annotate", str(images), str(out), "--model", str(engine_model), "--workers", "0",
            "--pred-iou-thresh", "0", "--stability-score-thresh", "0", "--no-progress"]  # fmt: skip
    assert main([*base, "--points-per-side", "2"]) == 0
    (out / "im2.json").unlink()  # as if the run had been killed before the last image
    capsys.readouterr()
    assert main([*base, "--points-per-side", "3"]) == 2
    one_line_error(capsys, "2 results made with other settings", "points_per_side 2 -> 3")
    assert main([*base, "--points-per-side", "3", "--force"]) == 0
    made = [json.loads(p.read_text())["made_with"] for p in sorted(out.glob("*.json"))]
    assert len(made) == 3 and {m["options"]["points_per_side"] for m in made} == {3}


def test_results_without_a_record_are_not_trusted(tmp_path: Path, engine_model: Path) -> None:
    from samkit.engine import annotate

    images, out = collection(tmp_path / "in", n=1), tmp_path / "out"
    out.mkdir()
    (out / "im0.json").write_text('{"image": {}, "annotations": []}')  # an older samkit's
    with pytest.raises(ConfigError, match="no record of its settings"):
        annotate(images, out, model=str(engine_model), workers=0, options=AMG)
    s = annotate(images, out, model=str(engine_model), workers=0, options=AMG, force=True)
    assert s.annotated == 1 and "made_with" in json.loads((out / "im0.json").read_text())


def test_result_files_are_readable_like_the_rest(tmp_path: Path, engine_model: Path) -> None:
    from samkit.engine import annotate

    images, out = collection(tmp_path / "in", n=1), tmp_path / "out"
    (images / "bad.png").write_bytes(b"not an image")
    annotate(images, out, model=str(engine_model), workers=0, options=AMG, coco=out / "c.json")
    umask = os.umask(0)
    os.umask(umask)
    want = 0o666 & ~umask
    for name in ("im0.json", "c.json", "failed.jsonl", "annotate.log.jsonl"):
        assert (out / name).stat().st_mode & 0o777 == want, name


def test_self_looping_symlink_is_recorded_as_failed(tmp_path: Path, engine_model: Path) -> None:
    from samkit.engine import annotate

    images, out = collection(tmp_path / "in", n=1), tmp_path / "out"
    os.symlink(images / "loop.png", images / "loop.png")
    s = annotate(images, out, model=str(engine_model), workers=0, options=AMG)
    assert s.failures == [("loop.png", s.failures[0][1])]
    assert "loops back on itself" in s.failures[0][1]
    failed = json.loads((out / "failed.jsonl").read_text())
    assert failed["image"] == "loop.png"


def test_server_limits_are_options_of_samkit_serve() -> None:
    from samkit.cli import build_parser

    args = build_parser().parse_args(["serve", "--max-points", "5", "--max-store-mb", "1"])
    assert (args.max_points, args.max_store_mb, args.decode_slots) == (5, 1.0, 2)
    assert args.max_everything_mpix == 2000 and args.max_mask_mpix == 1000


def test_health_is_not_run_in_the_thread_pool() -> None:
    import inspect

    from samkit.models import SamConfig, build_sam
    from samkit.server import create_app

    cfg = SamConfig(encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=1,
                    encoder_global_attn_indexes=(0,), image_size=64, window_size=4)  # fmt: skip
    app = create_app(build_sam(cfg))
    route = next(r for r in app.routes if getattr(r, "path", "") == "/api/health")
    assert inspect.iscoroutinefunction(route.endpoint)  # type: ignore[attr-defined]
