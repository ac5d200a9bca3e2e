"""Labelling sessions of `samkit serve` over real HTTP: projects kept in SQLite across a SIGKILL,
a read-only folder served as a project, objects with categories, export, PerSAM search."""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import fastapi  # noqa: F401  (the server extra)
import numpy as np
import pytest
from conftest import synthetic_image
from PIL import Image
from test_server_api import png_file, request, running_server, start_server, upload

from samkit.masks import decode_rle, encode_rle

H, W = 96, 128


def square(y0: int, x0: int, side: int = 30) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0 : y0 + side, x0 : x0 + side] = True
    return m


def rle(mask: np.ndarray) -> dict:
    return encode_rle(mask)[0]


def new_project(url: str, name: str = "p", categories: tuple[str, ...] = ("cat", "dog")) -> str:
    status, p = request("POST", url + "/api/projects", {"name": name, "categories": categories})
    assert status == 201, p
    return p["id"]


def add_image(url: str, pid: str, seed: int, name: str) -> str:
    img = png_file(synthetic_image(H, W, seed=seed))
    status, info = upload(url, img, name=name, path=f"/api/projects/{pid}/images")
    assert status == 201, info
    assert (info["width"], info["height"], info["name"]) == (W, H, name)
    return info["id"]


def add_object(url: str, image_id: str, category: str, mask: np.ndarray, score=0.9) -> dict:  # type: ignore[no-untyped-def]
    body = {"category": category, "mask": {"rle": rle(mask)}, "score": score}
    status, obj = request("POST", f"{url}/api/images/{image_id}/objects", body)
    assert status == 201, obj
    return obj


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(tmp_path_factory.mktemp("projects-server"), "--max-find-images", "3") as u:
        yield u


def test_project_survives_sigkill_and_restart(tmp_path: Path) -> None:
    proc, url = start_server(tmp_path)
    try:
        pid = new_project(url, "pets")
        a, b = add_image(url, pid, 1, "a.png"), add_image(url, pid, 2, "b.png")
        o1 = add_object(url, a, "cat", square(10, 10))
        o2 = add_object(url, a, "dog", square(50, 60), score=None)
        status, _ = request("PATCH", f"{url}/api/objects/{o2['id']}", {"category": "cat"})
        assert status == 200
        o3 = add_object(url, b, "dog", square(20, 40))
        assert request("DELETE", f"{url}/api/objects/{o3['id']}")[0] == 204
        assert request("PATCH", f"{url}/api/images/{a}/progress", {"done": True})[0] == 200
        before = request("GET", f"{url}/api/projects/{pid}")[1]
        objs_before = request("GET", f"{url}/api/images/{a}/objects")[1]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    proc, url = start_server(tmp_path)
    try:
        after = request("GET", f"{url}/api/projects/{pid}")[1]
        assert after == before
        assert [(im["name"], im["objects"], im["done"]) for im in after["images"]] == [
            ("a.png", 2, True),
            ("b.png", 0, False),
        ]
        objs = request("GET", f"{url}/api/images/{a}/objects")[1]
        assert objs == objs_before
        assert [o["id"] for o in objs["objects"]] == [o1["id"], o2["id"]]
        assert [o["category"] for o in objs["objects"]] == ["cat", "cat"]
        assert np.array_equal(decode_rle(objs["objects"][0]["rle"]), square(10, 10))
        assert objs["objects"][1]["score"] is None
        # the images came back too: a prompt on the restarted server works
        status, res = request(
            "POST", f"{url}/api/images/{b}/predict", {"points": [[60, 40]], "labels": [1]}
        )
        assert status == 200, res
    finally:
        proc.terminate()
        proc.wait(10)


def test_users_at_once_each_see_only_accepted_objects(server: str) -> None:
    pid = new_project(server, "shared")
    image = add_image(server, pid, 3, "shared.png")
    errors: list[object] = []

    def user(k: int) -> None:
        try:
            for j in range(5):
                add_object(server, image, "cat", square(5 + 10 * k, 5 + 10 * j, 8))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=user, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    objs = request("GET", f"{server}/api/images/{image}/objects")[1]["objects"]
    assert len(objs) == 20 and len({o["id"] for o in objs}) == 20
    # a prompt (a user's draft) leaves nothing behind on the server
    request("POST", f"{server}/api/images/{image}/predict", {"points": [[9, 9]], "labels": [1]})
    assert len(request("GET", f"{server}/api/images/{image}/objects")[1]["objects"]) == 20


def test_folder_is_served_read_only(tmp_path: Path) -> None:
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(synthetic_image(H, W, seed=5)).save(src / "one.png")
    Image.fromarray(synthetic_image(H, W, seed=6)).save(src / "sub" / "two.jpg")
    (src / "notes.txt").write_text("not an image")
    outside = tmp_path / "secret.png"
    Image.fromarray(synthetic_image(H, W, seed=7)).save(outside)
    (src / "link.png").symlink_to(outside)
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in src.rglob("*")}

    for _ in range(2):  # a restart finds the same project, with no duplicates
        with running_server(tmp_path, "--folder", str(src)) as url:
            projects = request("GET", url + "/api/projects")[1]["projects"]
            assert [(p["name"], p["folder"], p["images"]) for p in projects] == [
                ("photos", True, 2)
            ]
            proj = request("GET", f"{url}/api/projects/{projects[0]['id']}")[1]
            assert [im["name"] for im in proj["images"]] == ["one.png", "sub/two.jpg"]
            first = proj["images"][0]["id"]
            status, res = request(
                "POST", f"{url}/api/images/{first}/predict", {"points": [[60, 40]], "labels": [1]}
            )
            assert status == 200, res
            add_object(url, first, "thing", square(0, 0))
            png = request("GET", f"{url}/api/images/{first}/image.png")[1]
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), synthetic_image(H, W, 5))
            # deleting an image of the folder forgets it but never touches the file
            second = proj["images"][1]["id"]
            assert request("DELETE", f"{url}/api/images/{second}")[0] == 204
    after = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in src.rglob("*")}
    assert after == before, "the folder was written to"
    assert not list((tmp_path / "data" / "images").iterdir()), "no copies of the folder's files"


def test_coco_yolo_and_png_exports(server: str) -> None:
    from pycocotools.coco import COCO

    pid = new_project(server, "export me", ("cat", "dog"))
    a, b = add_image(server, pid, 8, "x.png"), add_image(server, pid, 9, "x.png")
    add_object(server, a, "dog", square(10, 10))
    add_object(server, a, "bird", square(40, 70, 20))
    add_object(server, b, "cat", square(30, 30))

    status, coco = request("GET", f"{server}/api/projects/{pid}/export?format=coco")
    assert status == 200, coco
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"{pid}.json"
    path.write_text(json.dumps(coco))
    api = COCO(str(path))
    path.unlink()
    assert [c["name"] for c in api.loadCats(api.getCatIds())] == ["cat", "dog", "bird"]
    assert sorted(im["file_name"] for im in api.loadImgs(api.getImgIds())) == ["x-2.png", "x.png"]
    anns = api.loadAnns(api.getAnnIds())
    assert len(anns) == 3
    dog = next(x for x in anns if x["category_id"] == 2)
    assert np.array_equal(api.annToMask(dog).astype(bool), square(10, 10))
    # SA-1B's box convention (samkit.masks.box_xyxy_to_xywh): w = x1 - x0, x1 inclusive
    assert dog["bbox"] == [10, 10, 29, 29] and dog["area"] == 900

    status, poly = request("GET", f"{server}/api/projects/{pid}/export?format=coco-polygons")
    assert status == 200
    seg = poly["annotations"][0]["segmentation"]
    assert isinstance(seg, list) and len(seg[0]) >= 6
    path.write_text(json.dumps(poly))
    api = COCO(str(path))
    path.unlink()
    m = api.annToMask(api.loadAnns(api.getAnnIds())[0]).astype(bool)
    assert (m & square(10, 10)).sum() / (m | square(10, 10)).sum() > 0.9

    status, data = request("GET", f"{server}/api/projects/{pid}/export?format=yolo")
    assert status == 200
    z = zipfile.ZipFile(io.BytesIO(data))
    assert sorted(z.namelist()) == ["data.yaml", "labels/x-2.txt", "labels/x.txt"]
    lines = z.read("labels/x.txt").decode().splitlines()
    assert [ln.split()[0] for ln in lines] == ["1", "2"]
    xy = np.array(lines[0].split()[1:], float).reshape(-1, 2) * (W, H)
    assert np.allclose(xy.min(0), [10, 10], atol=1e-3) and np.allclose(
        xy.max(0), [39, 39], atol=1e-3
    )
    assert '2: "bird"' in z.read("data.yaml").decode()

    status, data = request("GET", f"{server}/api/projects/{pid}/export?format=png")
    assert status == 200
    z = zipfile.ZipFile(io.BytesIO(data))
    labels = np.asarray(Image.open(io.BytesIO(z.read("masks/x.png"))))
    assert np.array_equal(labels == 1, square(10, 10)) and np.array_equal(
        labels == 2, square(40, 70, 20)
    )
    index = json.loads(z.read("instances.json"))
    assert [o["category"] for o in index["images"]["x.png"]] == ["dog", "bird"]


def test_find_this_object_in_every_image(server: str) -> None:
    pid = new_project(server, "find")
    ids = [add_image(server, pid, 10 + k, f"f{k}.png") for k in range(3)]
    body = {"image_id": ids[0], "mask": {"rle": rle(square(30, 40))}}
    status, res = request("POST", f"{server}/api/projects/{pid}/find", body)
    assert status == 200, res
    assert res["searched"] == 2
    assert {p["image_id"] for p in res["proposals"]} <= set(ids[1:])  # none where nothing's found
    for p in res["proposals"]:
        m = decode_rle(p["rle"])
        assert m.shape == (H, W) and m.any() and p["area"] == m.sum()
    for k in range(2):
        add_image(server, pid, 20 + k, f"g{k}.png")
    status, err = request("POST", f"{server}/api/projects/{pid}/find", body)
    assert status == 413 and "--max-find-images" in err["detail"], err


@pytest.mark.parametrize(
    ("method", "path", "body", "code"),
    [
        ("GET", "/api/projects/0123456789abcdef0123456789abcdef", None, 404),
        ("GET", "/api/projects/../../etc", None, 404),
        ("POST", "/api/projects", {"name": ""}, 422),
        ("POST", "/api/projects", {"name": "x", "categories": ["c" * 101]}, 422),
        ("GET", "/api/images/0123456789abcdef0123456789abcdef/objects", None, 404),
        ("DELETE", "/api/objects/nothex", None, 404),
    ],
)
def test_bad_project_requests_get_one_line_errors(server, method, path, body, code) -> None:  # type: ignore[no-untyped-def]
    status, err = request(method, server + path, body)
    assert status == code, err
    assert isinstance(err["detail"], str) and "\n" not in err["detail"]


def test_object_masks_must_have_the_images_size(server: str) -> None:
    pid = new_project(server, "sizes")
    image = add_image(server, pid, 30, "s.png")
    body = {"category": "cat", "mask": {"rle": rle(np.ones((H + 1, W), bool))}}
    status, err = request("POST", f"{server}/api/images/{image}/objects", body)
    assert status == 422 and "image's size" in err["detail"], err
    body = {"category": "cat", "mask": {"rle": rle(np.zeros((H, W), bool))}}
    status, err = request("POST", f"{server}/api/images/{image}/objects", body)
    assert status == 422 and "empty" in err["detail"], err
    status, err = request("GET", f"{server}/api/projects/{pid}/export?format=xml")
    assert status == 422, err
    status, err = upload(server, b"text", name="t.txt", path=f"/api/projects/{pid}/images")
    assert status == 415 and "not a readable image" in err["detail"], err
