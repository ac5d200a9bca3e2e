"""Build the sprites and backgrounds that samkit.data.photo_scenes composes into training scenes.

    .venv/bin/python scripts/build_training_assets.py [--out runs/assets]

Everything comes from packages installed with the ordinary clients, nothing is downloaded:

- Debian ``fonts-noto-color-emoji``: every single-codepoint emoji rendered at 109 px (the font's
  bitmap size) in colour: RGBA with an exact alpha mask.
- Debian ``oxygen-icon-theme``: the 256 px PNG icons (semi-realistic renderings with alpha).
- Debian ``mate-backgrounds`` (nature photos and abstract wallpapers), ``gnome-backgrounds``
  (raster wallpapers) and scikit-image's bundled sample photos (astronaut, coffee, chelsea,
  rocket, ...; no download) as backgrounds.

Output (regenerated, never committed): OUT/sprites/{emoji,icon}/NAME.png (RGBA, cropped to the
alpha, longest side <= 160 px) and OUT/backgrounds/NAME.jpg (RGB, longest side <= 640 px).
Which sprites and backgrounds are held out for evaluation is decided by a hash of the file name
(samkit.data.photo_scenes.is_held_out), so rebuilding gives the same split.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
ICON_ROOT = Path("/usr/share/icons/oxygen/base/256x256")
WALLPAPER_DIRS = [Path("/usr/share/backgrounds/mate"), Path("/usr/share/backgrounds/gnome")]
SKIMAGE_PHOTOS = (
    "astronaut brick camera chelsea coffee coins grass gravel hubble_deep_field"
    " immunohistochemistry retina rocket moon page text colorwheel clock"
).split()
SPRITE_MAX = 160
BACKGROUND_MAX = 640


def crop_to_alpha(rgba: np.ndarray, min_alpha: int = 128) -> np.ndarray | None:
    """The tight crop of an H x W x 4 uint8 array around its opaque pixels (None if empty)."""
    ys, xs = np.nonzero(rgba[..., 3] >= min_alpha)
    if len(ys) == 0:
        return None
    return rgba[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def fit(img: Image.Image, max_side: int) -> Image.Image:
    s = max_side / max(img.size)
    if s >= 1:
        return img
    return img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.LANCZOS)


def save_sprite(rgba: np.ndarray, path: Path) -> bool:
    crop = crop_to_alpha(rgba)
    if crop is None or min(crop.shape[:2]) < 12 or (crop[..., 3] >= 128).mean() < 0.15:
        return False  # empty, a thin sliver, or mostly transparent (an outline)
    fit(Image.fromarray(crop, "RGBA"), SPRITE_MAX).save(path)
    return True


def build_emoji(out: Path) -> int:
    from fontTools.ttLib import TTFont

    font = ImageFont.truetype(str(EMOJI_FONT), 109)
    cmap = TTFont(str(EMOJI_FONT)).getBestCmap()
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for cp in sorted(cmap):
        # skip digits, '#', '*', skin-tone modifiers, regional indicators and tag characters
        if cp < 0x2000 or 0x1F1E6 <= cp <= 0x1F1FF or 0x1F3FB <= cp <= 0x1F3FF or cp >= 0xE0000:
            continue
        img = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
        ImageDraw.Draw(img).text((8, 8), chr(cp), font=font, embedded_color=True)
        n += save_sprite(np.asarray(img), out / f"u{cp:05x}.png")
    return n


def build_icons(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for p in sorted(ICON_ROOT.rglob("*.png")):
        if p.is_symlink():
            continue
        img = Image.open(p)
        if img.mode != "RGBA":
            img = img.convert("RGBA")
        n += save_sprite(np.asarray(img), out / f"{p.parent.name}-{p.stem}.png")
    return n


def build_backgrounds(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    files = sorted(f for d in WALLPAPER_DIRS for f in d.rglob("*") if f.is_file())
    for f in files:
        if f.suffix.lower() not in (".jpg", ".jpeg", ".png", ".webp"):
            continue
        if "_" in f.stem and f.stem.split("_")[-1][:1].isdigit():
            continue  # the same wallpaper at another resolution
        try:
            img = Image.open(f).convert("RGB")
        except OSError:
            continue
        fit(img, BACKGROUND_MAX).save(out / f"{f.parent.name}-{f.stem}.jpg", quality=92)
        n += 1
    import skimage.data

    for name in SKIMAGE_PHOTOS:
        arr = np.asarray(getattr(skimage.data, name)())
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, 2)
        arr = arr[..., :3]
        if arr.dtype != np.uint8:
            arr = (255 * (arr - arr.min()) / max(float(arr.max() - arr.min()), 1e-6)).astype(
                np.uint8
            )
        fit(Image.fromarray(arr), BACKGROUND_MAX).save(out / f"skimage-{name}.jpg", quality=92)
        n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/assets", help="cache folder (default runs/assets)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    missing = [p for p in (EMOJI_FONT, ICON_ROOT, *WALLPAPER_DIRS) if not p.exists()]
    if missing:
        print(
            f"missing {', '.join(map(str, missing))}: apt-get install fonts-noto-color-emoji "
            "oxygen-icon-theme mate-backgrounds gnome-backgrounds",
            file=sys.stderr,
        )
        return 1
    counts = {
        "emoji": build_emoji(out / "sprites" / "emoji"),
        "icon": build_icons(out / "sprites" / "icon"),
        "backgrounds": build_backgrounds(out / "backgrounds"),
    }
    print(f"{out}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
