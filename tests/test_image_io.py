"""The one image loader: formats people actually have, and clear errors for the rest."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from samkit.errors import ImageError
from samkit.image_io import load_image, load_mask


def test_exif_rotation_is_applied(tmp_path) -> None:  # type: ignore[no-untyped-def]
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "r.jpg")
    assert out.shape == (40, 20, 3)
    assert out[:15].mean() > 200 and out[-15:].mean() < 50  # white half is now on top


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "I;16", "1"])
def test_common_modes_become_rgb_uint8(tmp_path, mode) -> None:  # type: ignore[no-untyped-def]
    base = Image.fromarray((np.arange(30 * 50).reshape(30, 50) % 255).astype(np.uint8))
    img = (
        base.convert(mode)
        if mode != "I;16"
        else Image.fromarray((np.arange(30 * 50).reshape(30, 50) * 40).astype(np.uint16))
    )
    ext = "tiff" if mode == "CMYK" else "png"
    img.save(tmp_path / f"x.{ext}")
    out = load_image(tmp_path / f"x.{ext}")
    assert out.shape == (30, 50, 3) and out.dtype == np.uint8


def test_sixteen_bit_keeps_its_range(tmp_path) -> None:  # type: ignore[no-untyped-def]
    arr = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "d.png")
    out = load_image(tmp_path / "d.png")
    assert out.min() == 0 and out.max() == 255


@pytest.mark.parametrize(
    "arr",
    [
        np.zeros((5, 6), np.uint8),
        np.zeros((5, 6, 1), np.uint8),
        np.zeros((5, 6, 4), np.uint8),
        np.ones((5, 6, 3), np.float32),
        np.ones((5, 6, 3), bool),
        np.full((5, 6, 3), 999, np.uint16),
    ],
)
def test_arrays_are_accepted(arr) -> None:  # type: ignore[no-untyped-def]
    out = load_image(arr)
    assert out.shape == (5, 6, 3) and out.dtype == np.uint8


def test_missing_empty_corrupt_and_non_image_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(tmp_path / "empty.png")
    (tmp_path / "notes.jpg").write_text("just text")
    with pytest.raises(ImageError, match="not an image"):
        load_image(tmp_path / "notes.jpg")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    Image.new("L", (3000, 2000)).save(tmp_path / "big.png")
    monkeypatch.setenv("SAMKIT_MAX_PIXELS", "1000000")
    with pytest.raises(ImageError, match="megapixels.*SAMKIT_MAX_PIXELS"):
        load_image(tmp_path / "big.png")


def test_bad_arrays_and_types_give_clear_errors() -> None:
    with pytest.raises(ImageError, match="H x W x 3"):
        load_image(np.zeros((4, 4, 7), np.uint8))
    with pytest.raises(ImageError, match="empty"):
        load_image(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(ImageError, match="NaN"):
        load_image(np.full((4, 4, 3), np.nan, np.float32))
    with pytest.raises(ImageError, match="cannot read an image"):
        load_image(12345)  # type: ignore[arg-type]


def test_palette_mask_foreground_is_nonzero_index(tmp_path) -> None:  # type: ignore[no-untyped-def]
    idx = np.zeros((10, 10), np.uint8)
    idx[2:5, 3:7] = 1
    m = Image.fromarray(idx, mode="P")
    m.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)
    m.save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png", size=(10, 10))
    assert mask.sum() == 12 and mask[3, 4]
    with pytest.raises(ImageError, match="does not match the image size"):
        load_mask(tmp_path / "m.png", size=(11, 10))
