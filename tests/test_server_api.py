"""`samkit serve` over real HTTP: a uvicorn started by the CLI on 127.0.0.1, a tiny model."""

from __future__ import annotations

import base64
import io
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import fastapi  # noqa: F401  (the server extra; `make test` installs samkit[all])
import numpy as np
import pytest
from conftest import synthetic_image
from PIL import Image

MAX_UPLOAD_MB = 1


def tiny_model_file(folder: Path) -> Path:
    """A 256-px random-weight model saved as safetensors (the bundled one may not exist)."""
    from samkit.checkpoints import save_safetensors
    from samkit.models import SamConfig, build_sam

    path = folder / "tiny.safetensors"
    if not path.exists():
        cfg = SamConfig(
            encoder_embed_dim=64,
            encoder_depth=2,
            encoder_num_heads=2,
            encoder_global_attn_indexes=(1,),
            image_size=256,
            window_size=8,
        )
        save_safetensors(build_sam(cfg), path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """`samkit serve` in a subprocess on ``folder / "data"``, its log in ``folder/server.log``;
    returns once it answers /api/health."""
    port = free_port()
    cmd = [sys.executable, "-m", "samkit", "serve", "--model", str(tiny_model_file(folder))]
    cmd += ["--port", str(port), "--data-dir", str(folder / "data")]
    # fp32, as the library's default: answers are compared with it (and "auto" picks bf16 on
    # CPUs with bf16 units)
    cmd += ["--precision", "fp32", "--max-upload-mb", str(MAX_UPLOAD_MB), *extra]
    with open(folder / "server.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(url + "/api/health", timeout=2)
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError((folder / "server.log").read_text()) from None
            time.sleep(0.2)


@contextmanager
def running_server(folder: Path, *extra: str) -> Iterator[str]:
    """`samkit serve` in a subprocess (``extra``: more options); yields its base URL and stops
    it afterwards."""
    proc, url = start_server(folder, *extra)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def request(method: str, url: str, body: object = None, headers: dict | None = None):  # type: ignore[no-untyped-def]
    """(status, parsed JSON or raw bytes) of one HTTP request."""
    data = None
    headers = dict(headers or {})
    if body is not None and not isinstance(body, bytes):
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    elif body is not None:
        data = body
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, raw, ctype = r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        status, raw, ctype = e.code, e.read(), e.headers.get("content-type", "")
    return status, (json.loads(raw) if "json" in ctype and raw else raw)


def png_file(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def upload(url: str, data: bytes, name: str = "img.png", path: str = "/api/images"):  # type: ignore[no-untyped-def]
    """Multipart upload of one file field (to ``path``)."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    ctype = f"multipart/form-data; boundary={boundary}"
    return request("POST", url + path, body, {"content-type": ctype})


def png_mask(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64)))) > 127


@pytest.fixture(scope="module")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server")


@pytest.fixture(scope="module")
def server(server_dir: Path) -> Iterator[str]:
    with running_server(server_dir) as url:
        yield url


@pytest.fixture(scope="module")
def local_predictor(server_dir: Path):  # type: ignore[no-untyped-def]
    """The same weights in this process, to check the server's answers against."""
    import samkit

    return samkit.Predictor(samkit.load(tiny_model_file(server_dir)))


IMG_A = synthetic_image(120, 160, seed=1)
IMG_B = synthetic_image(90, 140, seed=2)


@pytest.fixture(scope="module")
def ids(server: str) -> dict[str, str]:
    out = {}
    for name, img in (("a", IMG_A), ("b", IMG_B)):
        status, info = upload(server, png_file(img))
        assert status == 201, info
        out[name] = info["id"]
    return out


# -- the API ----------------------------------------------------------------------------------


def test_health_reports_model_and_cache_limit(server: str) -> None:
    status, h = request("GET", server + "/api/health")
    assert status == 200 and h["status"] == "ok"
    assert h["image_size"] == 256
    assert h["cache"]["limit_bytes"] == 512 * 2**20
    assert h["max_upload_bytes"] == MAX_UPLOAD_MB * 2**20


def test_openapi_spec_lists_every_endpoint(server: str) -> None:
    status, spec = request("GET", server + "/openapi.json")
    assert status == 200
    for path in (
        "/api/health",
        "/api/images",
        "/api/images/{image_id}/predict",
        "/api/images/{image_id}/everything",
        "/api/references",
        "/api/references/{ref_id}/apply",
        "/api/export/coco",
        "/api/export/png",
    ):
        assert path in spec["paths"], path


def test_upload_returns_a_server_id_and_the_image_size(server: str, ids: dict[str, str]) -> None:
    status, info = request("GET", f"{server}/api/images/{ids['a']}")
    assert status == 200
    assert (info["width"], info["height"]) == (160, 120)
    assert len(ids["a"]) == 32 and ids["a"] != ids["b"]
    status, png = request("GET", f"{server}/api/images/{ids['a']}/image.png")
    assert status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(png))), IMG_A)


def test_point_prompt_gives_three_candidates_equal_to_the_library(
    server: str, ids: dict[str, str], local_predictor
) -> None:  # type: ignore[no-untyped-def]
    body = {"points": [[80, 60], [20, 20]], "labels": [1, 0], "format": "both"}
    status, res = request("POST", f"{server}/api/images/{ids['a']}/predict", body)
    assert status == 200, res
    local_predictor.set_image(IMG_A)
    ref = local_predictor.predict(np.array([[80, 60], [20, 20]]), np.array([1, 0]))
    assert len(res["masks"]) == 3 and res["best"] == int(np.argmax(ref.scores))
    np.testing.assert_allclose([m["score"] for m in res["masks"]], ref.scores, atol=1e-4)
    from samkit.masks import decode_rle

    for m, want in zip(res["masks"], ref.masks):
        got = png_mask(m["png"])
        assert np.array_equal(got, decode_rle(m["rle"]))
        assert (got != want).mean() < 1e-3
        assert m["area"] == int(got.sum())


def test_box_and_mask_prompts_are_accepted(server: str, ids: dict[str, str]) -> None:
    url = f"{server}/api/images/{ids['b']}/predict"
    status, res = request("POST", url, {"box": [10, 10, 100, 70], "multimask": False})
    assert status == 200 and len(res["masks"]) == 1
    rough = {"png": res["masks"][0]["png"]}
    status, res2 = request("POST", url, {"mask": rough, "points": [[50, 40]], "labels": [1]})
    assert status == 200 and len(res2["masks"]) == 3
    assert png_mask(res2["masks"][0]["png"]).shape == (90, 140)


def test_everything_returns_sa1b_records(server: str, ids: dict[str, str]) -> None:
    opts = {"points_per_side": 4, "pred_iou_thresh": 0, "stability_score_thresh": 0}
    status, res = request("POST", f"{server}/api/images/{ids['a']}/everything", opts)
    assert status == 200, res
    assert res["annotations"], "a 4x4 grid without filters keeps some masks"
    a = res["annotations"][0]
    assert set(a) == {"segmentation", "area", "bbox", "predicted_iou", "stability_score"}
    assert a["segmentation"]["size"] == [120, 160] and len(a["bbox"]) == 4
    areas = [x["area"] for x in res["annotations"]]
    assert areas == sorted(areas, reverse=True)
    status, res = request(
        "POST", f"{server}/api/images/{ids['a']}/everything", {"points_per_side": 999}
    )
    assert status == 422


def test_reference_mask_is_found_again_in_another_image(server: str, ids: dict[str, str]) -> None:
    status, res = request(
        "POST", f"{server}/api/images/{ids['a']}/predict", {"points": [[80, 60]], "labels": [1]}
    )
    mask = res["masks"][res["best"]]
    status, ref = request(
        "POST", f"{server}/api/references", {"image_id": ids["a"], "mask": {"png": mask["png"]}}
    )
    assert status == 201, ref
    status, out = request(
        "POST", f"{server}/api/references/{ref['id']}/apply", {"image_id": ids["b"]}
    )
    assert status == 200, out
    assert png_mask(out["mask"]["png"]).shape == (90, 140)
    assert out["labels"][0] == 1 and len(out["points"]) == len(out["labels"])
    empty = {"rle": {"size": [120, 160], "counts": [120 * 160]}}
    status, err = request("POST", f"{server}/api/references", {"image_id": ids["a"], "mask": empty})
    assert status == 422 and "empty" in err["detail"]


def test_export_gives_a_coco_file_and_a_png(server: str, ids: dict[str, str]) -> None:
    m = np.zeros((120, 160), bool)
    m[10:30, 40:100] = True
    from samkit.masks import decode_rle, encode_rle

    item = {"image_id": ids["a"], "masks": [{"rle": encode_rle(m)[0]}], "scores": [0.9]}
    status, coco = request("POST", f"{server}/api/export/coco", {"items": [item]})
    assert status == 200
    assert coco["images"][0]["width"] == 160 and coco["categories"][0]["id"] == 1
    ann = coco["annotations"][0]
    # XYWH with w = x1 - x0 of the inclusive box: the official SA-1B convention (samkit.formats)
    assert ann["bbox"] == [40, 10, 59, 19] and ann["area"] == 1200 and ann["score"] == 0.9
    assert np.array_equal(decode_rle(ann["segmentation"]), m)
    status, png = request(
        "POST", f"{server}/api/export/png", {"image_id": ids["a"], "mask": item["masks"][0]}
    )
    assert status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(png))) > 0, m)


# -- robustness -------------------------------------------------------------------------------


def raw_exchange(url: str, head: bytes, chunks: list[bytes], timeout: float = 10) -> bytes:
    """Send raw bytes over a socket and return what the server answers."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(head)
        try:
            for c in chunks:
                s.sendall(c)
        except OSError:
            pass  # the server may close before we finish: that is the point
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return out


def test_upload_over_the_limit_gets_413_before_the_body_is_sent(server: str) -> None:
    head = (
        b"POST /api/images HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
        b"boundary=b\r\nContent-Length: 50000000\r\n\r\n"
    )
    # no body at all: a server that waited for it would send nothing before the socket timeout
    reply = raw_exchange(server, head, [], timeout=10)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"limit of 1 MiB" in reply


def test_streamed_upload_over_the_limit_gets_413(server: str) -> None:
    head = (
        b"POST /api/images HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
        b"boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n'
    chunk = part + b"\0" * (256 * 1024)
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)]
    chunks += [b"%x\r\n%s\r\n" % (256 * 1024, b"\0" * 256 * 1024)] * 8
    reply = raw_exchange(server, head, chunks)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]


def test_non_image_upload_gets_415_with_a_message(server: str) -> None:
    status, err = upload(server, b"just some text, not pixels", name="notes.txt")
    assert status == 415
    assert "notes.txt" in err["detail"] and "not" in err["detail"]
    assert "/" not in err["detail"], "no server path leaks into the message"


@pytest.mark.parametrize(
    "ident",
    ["0123456789abcdef0123456789abcdef", "zzz", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"],
)
def test_unknown_or_malformed_ids_get_404(server: str, ident: str) -> None:
    status, err = request("POST", f"{server}/api/images/{ident}/predict", {"points": [[1, 1]]})
    assert status == 404, err
    status, _ = request("POST", f"{server}/api/references/{ident}/apply", {"image_id": ident})
    assert status == 404


def test_invalid_prompt_gets_422_with_a_message(server: str, ids: dict[str, str]) -> None:
    url = f"{server}/api/images/{ids['a']}/predict"
    status, err = request("POST", url, {})
    assert status == 422 and "point" in err["detail"]
    status, err = request("POST", url, {"points": [[1, 1], [2, 2]], "labels": [1]})
    assert status == 422 and isinstance(err["detail"], str)


def test_concurrent_clients_each_get_their_own_images_mask(
    server: str, ids: dict[str, str]
) -> None:
    def ask(name: str) -> np.ndarray:
        body = {"points": [[40, 40]], "labels": [1], "multimask": False}
        _, res = request("POST", f"{server}/api/images/{ids[name]}/predict", body)
        return png_mask(res["masks"][0]["png"])

    want = {name: ask(name) for name in ("a", "b")}
    errors: list[str] = []

    def client(name: str) -> None:
        for _ in range(8):
            if not np.array_equal(ask(name), want[name]):
                errors.append(name)

    threads = [threading.Thread(target=client, args=(n,)) for n in ("a", "b", "a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# -- the cache --------------------------------------------------------------------------------


def test_embedding_cache_is_bounded_by_bytes_and_recomputes_evicted_images(tmp_path: Path) -> None:
    import samkit
    from samkit.server.state import Workspace

    model = samkit.load(tiny_model_file(tmp_path))
    ws = Workspace(model, tmp_path / "data", cache_bytes=1)  # room for one entry only
    first, _, _ = ws.add_image(png_file(IMG_A))
    before = ws.predict(first, points=np.array([[80, 60]]), labels=np.array([1])).masks
    second, _, _ = ws.add_image(png_file(IMG_B))
    assert ws.cache.stats()["entries"] == 1 and ws.cache.get(first) is None
    after = ws.predict(first, points=np.array([[80, 60]]), labels=np.array([1])).masks
    assert np.array_equal(before, after)
    assert ws.cache.get(second) is None, "the least recently used entry went"
    assert sorted(ws.image_ids()) == sorted([first, second])


@contextmanager
def app_server(folder: Path, model: object = None, **limits: float) -> Iterator[tuple[str, object]]:
    """create_app on uvicorn in a thread (so a test can hold the app's locks); yields (base URL,
    the app's Workspace). ``model``: a loaded Sam (default: the tiny model file)."""
    import uvicorn

    import samkit
    from samkit.server import create_app
    from samkit.server.limits import Limits

    model = model if model is not None else samkit.load(tiny_model_file(folder))
    app = create_app(model, folder / "data", limits=Limits(**limits))  # type: ignore[arg-type]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app.state.workspace
    finally:
        server.should_exit = True
        thread.join(10)
