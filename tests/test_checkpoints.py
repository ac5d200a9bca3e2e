"""Loading official-layout checkpoints, architecture inference, clear errors, and downloads
from a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import os
import pickle
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import samkit
from samkit.checkpoints import infer_config, save_safetensors
from samkit.errors import CheckpointError, ChecksumError
from samkit.models import CONFIGS, build_sam
from samkit.zoo import ZooEntry, download, ensure_downloaded


def test_official_state_dict_loads_without_naming_a_config(tmp_path, twins, small_cfg) -> None:  # type: ignore[no-untyped-def]
    off, _ = twins
    torch.save(off.state_dict(), tmp_path / "small.pth")
    model = samkit.load(tmp_path / "small.pth")
    assert model.config == small_cfg
    for k, v in off.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h", "hq_vit_b"])
def test_architecture_is_inferred_from_official_shapes(name) -> None:  # type: ignore[no-untyped-def]
    # Shapes only (meta tensors): no memory, no weights needed.
    with torch.device("meta"):
        model = build_sam(CONFIGS[name])
    assert infer_config(model.state_dict()) == CONFIGS[name]


def test_other_sizes_are_inferred(small_cfg) -> None:  # type: ignore[no-untyped-def]
    cfg = replace(
        small_cfg,
        image_size=512,
        window_size=8,
        encoder_depth=3,
        encoder_global_attn_indexes=(0, 2),
        mlp_ratio=2.0,
        decoder_mlp_dim=512,
    )
    with torch.device("meta"):
        model = build_sam(cfg)
    assert infer_config(model.state_dict()) == cfg


def test_safetensors_round_trip_keeps_config_and_weights(tmp_path, twins) -> None:  # type: ignore[no-untyped-def]
    _, ours = twins
    save_safetensors(ours, tmp_path / "m.safetensors")
    again = samkit.load(tmp_path / "m.safetensors")
    assert again.config == ours.config
    k = "mask_decoder.iou_token.weight"
    assert torch.equal(again.state_dict()[k], ours.state_dict()[k])


def test_wrong_architecture_names_missing_and_mismatched_keys(tmp_path, twins) -> None:  # type: ignore[no-untyped-def]
    off, _ = twins
    torch.save(off.state_dict(), tmp_path / "small.pth")
    with pytest.raises(CheckpointError) as e:
        samkit.load(tmp_path / "small.pth", model_type="vit_b")
    msg = str(e.value)
    assert "does not fit" in msg and "missing keys" in msg and "shape mismatches" in msg
    assert "Drop model_type" in msg


def test_non_sam_state_dict_says_which_key_is_missing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not a SAM checkpoint.*patch_embed"):
        samkit.load(tmp_path / "other.pth")


def test_truncated_checkpoint_gives_clear_error(tmp_path, twins) -> None:  # type: ignore[no-untyped-def]
    off, _ = twins
    torch.save(off.state_dict(), tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        samkit.load(tmp_path / "cut.pth")


def test_text_file_is_not_a_checkpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "notes.pth").write_text("hello, I am not a model\n")
    with pytest.raises(CheckpointError):
        samkit.load(tmp_path / "notes.pth")


def test_empty_file_and_unknown_name(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        samkit.load(tmp_path / "empty.pth")
    with pytest.raises(CheckpointError, match="neither a model name"):
        samkit.load("vit_q")


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("touch /tmp/samkit_pwned_by_pickle",))


def test_pickle_that_runs_code_is_refused_not_executed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = Path("/tmp/samkit_pwned_by_pickle")
    marker.unlink(missing_ok=True)
    torch.save({"x": _Evil()}, tmp_path / "evil.pth", pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(CheckpointError, match="refused"):
        samkit.load(tmp_path / "evil.pth")
    assert not marker.exists()


# -- downloads against a real HTTP server ------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    payload = b""
    cut_at: int | None = None  # close the connection after this many bytes (once)
    requests: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802
        cls = type(self)
        cls.requests.append(self.headers.get("Range"))
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
        body = cls.payload[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cls.cut_at is not None and not rng:
            self.wfile.write(body[: cls.cut_at])
            self.wfile.flush()
            cls.cut_at = None
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
        pass


@pytest.fixture()
def server():  # type: ignore[no-untyped-def]
    _Handler.payload = os.urandom(300_000)
    _Handler.cut_at = None
    _Handler.requests = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/model.pth", _Handler
    srv.shutdown()


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_download_verifies_checksum_and_lands_atomically(tmp_path, server) -> None:  # type: ignore[no-untyped-def]
    url, h = server
    dest = tmp_path / "cache" / "model.pth"
    download(url, dest, sha256=_sha(h.payload), size=len(h.payload), progress=False)
    assert dest.read_bytes() == h.payload
    assert not dest.with_name("model.pth.part").exists()


def test_corrupted_download_is_rejected_with_both_hashes(tmp_path, server) -> None:  # type: ignore[no-untyped-def]
    url, h = server
    wrong = _sha(b"something else")
    dest = tmp_path / "model.pth"
    with pytest.raises(ChecksumError) as e:
        download(url, dest, sha256=wrong, progress=False)
    assert wrong in str(e.value) and _sha(h.payload) in str(e.value)
    assert not dest.exists()


def test_interrupted_download_resumes_with_range_request(tmp_path, server) -> None:  # type: ignore[no-untyped-def]
    url, h = server
    h.cut_at = 100_000
    dest = tmp_path / "model.pth"
    with pytest.raises(CheckpointError, match="run again to resume|interrupted"):
        download(url, dest, sha256=_sha(h.payload), size=len(h.payload), progress=False)
    part = dest.with_name("model.pth.part")
    assert 0 < part.stat().st_size < len(h.payload)
    download(url, dest, sha256=_sha(h.payload), size=len(h.payload), progress=False)
    assert dest.read_bytes() == h.payload
    assert h.requests[-1] == "bytes=100000-"


def test_zoo_entry_downloads_into_samkit_home(tmp_path, server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    url, h = server
    monkeypatch.setenv("SAMKIT_HOME", str(tmp_path / "home"))
    e = ZooEntry("t", url, len(h.payload), _sha(h.payload)[:8], "vit_b", "test", "t.pth")
    p = ensure_downloaded(e, progress=False)
    assert p == tmp_path / "home" / "t.pth" and p.read_bytes() == h.payload


def test_recommended_generator_settings_travel_in_the_safetensors_metadata(tmp_path) -> None:
    import json as _json

    import pytest as _pytest
    from safetensors.torch import load_file, save_file

    import samkit
    from samkit.errors import CheckpointError
    from samkit.models import build_sam

    model = build_sam("tiny")
    model.generator_defaults = {"pred_iou_thresh": 0.6, "stability_score_thresh": 0.8}
    path = tmp_path / "m.safetensors"
    save_safetensors(model, path)
    loaded = samkit.load(str(path), device="cpu")
    assert loaded.generator_defaults == {"pred_iou_thresh": 0.6, "stability_score_thresh": 0.8}
    bad = tmp_path / "bad.safetensors"
    meta = {"samkit_config": _json.dumps(model.config.to_dict())}
    save_file(load_file(str(path)), str(bad), metadata={**meta, "samkit_generator": '{"x": 1}'})
    with _pytest.raises(CheckpointError, match="'samkit_generator' metadata entry"):
        samkit.load(str(bad), device="cpu")
