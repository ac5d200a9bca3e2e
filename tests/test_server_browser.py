"""The web page in a real browser: Playwright driving Debian's chromium against `samkit serve`."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import fastapi  # noqa: F401  (the server extra; `make test` installs samkit[all])
import numpy as np
import pytest
from conftest import synthetic_image
from PIL import Image
from playwright import sync_api
from test_server_api import png_mask, request, running_server

W, H = 320, 240
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(tmp_path_factory.mktemp("browser-server")) as url:
        yield url


@pytest.fixture(scope="module")
def page(server: str) -> Iterator[object]:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail(
            "the browser tests need Debian's chromium: apt-get install -y chromium "
            "(CI installs it; never `playwright install`)"
        )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1100, "height": 700})
        pg.goto(server + "/")
        yield pg
        browser.close()


def open_image(page, path: Path) -> None:  # type: ignore[no-untyped-def]
    page.set_input_files("#file", str(path))
    page.wait_for_function(
        "(n) => window.samkit.current && window.samkit.current.name === n "
        "&& document.body.dataset.status === 'idle'",
        arg=path.name,
    )


def overlay_mask(page) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Pixels of the overlay canvas that are painted (alpha > 0), as bool H x W."""
    flat = page.evaluate(
        """() => { const c = document.getElementById('overlay');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let s = ''; for (let i = 3; i < d.length; i += 4) s += d[i] > 0 ? '1' : '0';
        return [c.width, c.height, s]; }"""
    )
    w, h, bits = flat
    return (np.frombuffer(bits.encode(), np.uint8) == ord("1")).reshape(h, w)


def api_mask(server: str, page) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The API's answer for the prompts the page holds: the mask it picked (the best)."""
    st = page.evaluate(
        "() => { const s = window.samkit.current; "
        "return {id: s.id, points: s.points, labels: s.labels, box: s.box}; }"
    )
    body = {"points": st["points"], "labels": st["labels"], "box": st["box"]}
    status, res = request("POST", f"{server}/api/images/{st['id']}/predict", body)
    assert status == 200, res
    return png_mask(res["masks"][res["best"]]["png"])


def wait_rendered(page) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        "() => document.body.dataset.status === 'idle' && "
        "document.getElementById('overlay').dataset.rendered === String(window.samkit.seq)"
    )


def test_clicks_draw_the_apis_mask_and_a_screenshot_is_kept(
    server: str, page, tmp_path_factory: pytest.TempPathFactory
) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("browser")
    img = folder / "scene.png"
    Image.fromarray(synthetic_image(H, W, seed=3)).save(img)
    open_image(page, img)
    box = page.locator("#marks").bounding_box()
    assert (round(box["width"]), round(box["height"])) == (W, H), "shown at natural size"

    t0 = time.monotonic()
    page.mouse.click(box["x"] + 160, box["y"] + 120)  # left: object
    wait_rendered(page)
    latency = time.monotonic() - t0
    assert page.evaluate("window.samkit.current.points") == [[160, 120]]
    shown = overlay_mask(page)
    assert shown.any(), "an overlay appeared"
    assert np.array_equal(shown, api_mask(server, page))
    assert latency < 2.0, f"overlay took {latency:.2f} s"
    assert page.locator("#candidates li").count() == 3
    assert "(best)" in page.locator("#candidates li.picked").inner_text()

    page.mouse.click(box["x"] + 30, box["y"] + 30, button="right")  # right: background
    wait_rendered(page)
    assert page.evaluate("window.samkit.current.labels") == [1, 0]
    assert np.array_equal(overlay_mask(page), api_mask(server, page))

    page.click("#undo")
    wait_rendered(page)
    assert page.evaluate("window.samkit.current.labels") == [1]
    assert np.array_equal(overlay_mask(page), api_mask(server, page))

    page.mouse.move(box["x"] + 100, box["y"] + 60)
    page.mouse.down()
    page.mouse.move(box["x"] + 200, box["y"] + 120, steps=4)
    page.mouse.move(box["x"] + 250, box["y"] + 200, steps=4)
    page.mouse.up()
    wait_rendered(page)
    assert page.evaluate("window.samkit.current.box") == [100, 60, 250, 200]
    assert np.array_equal(overlay_mask(page), api_mask(server, page))

    page.locator("#candidates li").nth(2).click()
    assert page.evaluate("window.samkit.current.picked") == 2
    shot = folder / "server_page.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")

    page.click("#clear")
    wait_rendered(page)
    assert not overlay_mask(page).any()


def test_everything_button_colors_many_masks(page) -> None:  # type: ignore[no-untyped-def]
    # Random weights: without the filters, so that masks survive.
    page.evaluate(
        "window.samkit.everythingOptions = "
        "{points_per_side: 8, pred_iou_thresh: 0, stability_score_thresh: 0}"
    )
    page.click("#everything")
    page.wait_for_function("() => window.samkit.current.everything !== null")
    wait_rendered(page)
    n = page.evaluate("window.samkit.current.everything.length")
    assert n > 0
    assert overlay_mask(page).any()
    assert "masks in" in page.locator("#status").inner_text()


def test_reference_is_applied_to_another_image(
    page, tmp_path_factory: pytest.TempPathFactory
) -> None:  # type: ignore[no-untyped-def]
    box = page.locator("#marks").bounding_box()
    page.mouse.click(box["x"] + 160, box["y"] + 120)
    wait_rendered(page)
    page.click("#reference")
    page.wait_for_function("() => window.samkit.reference !== null")
    assert page.locator("#apply").is_enabled()

    other = tmp_path_factory.mktemp("browser2") / "other.png"
    Image.fromarray(synthetic_image(H, W, seed=4)).save(other)
    open_image(page, other)
    page.click("#apply")
    page.wait_for_function("() => window.samkit.current.result !== null")
    wait_rendered(page)
    assert page.evaluate("window.samkit.current.labels[0]") == 1
    assert "Reference found" in page.locator("#status").inner_text()
    assert page.locator("#images li").count() == 2


def test_a_non_image_file_shows_the_servers_message(
    page, tmp_path_factory: pytest.TempPathFactory
) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path_factory.mktemp("browser3") / "notes.txt"
    bad.write_text("not an image")
    page.set_input_files("#file", str(bad))
    page.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('Could not open')"
    )
    assert "not a readable image" in page.locator("#status").inner_text()
