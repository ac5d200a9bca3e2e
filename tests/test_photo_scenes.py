"""Photo-like copy-paste scenes: seeded, masks equal to the pasted alpha after occlusion, parts
inside wholes, a hash split of the assets, and the dataset specs of open_dataset. The sprites and
backgrounds are made here, so no Debian package is needed."""

import cv2
import numpy as np
import pytest

from samkit.data import open_dataset
from samkit.data.photo_scenes import (
    AssetLibrary,
    MixDataset,
    PhotoSceneDataset,
    compose_scene,
    is_held_out,
)
from samkit.errors import ConfigError

COLORS = [(230, 30, 30), (30, 200, 40), (40, 60, 230), (240, 220, 20), (200, 40, 220)]


def disk_sprite(color: tuple[int, int, int], side: int = 32) -> np.ndarray:
    """An opaque flat-coloured disk on a transparent square -> side x side x 4 uint8."""
    rgba = np.zeros((side, side, 4), np.uint8)
    yy, xx = np.mgrid[0:side, 0:side]
    inside = (yy - side / 2 + 0.5) ** 2 + (xx - side / 2 + 0.5) ** 2 < (side / 2 - 1) ** 2
    rgba[inside] = (*color, 255)
    return rgba


@pytest.fixture
def assets() -> AssetLibrary:
    grey = np.full((80, 80, 3), 128, np.uint8)
    return AssetLibrary([disk_sprite(c) for c in COLORS], [grey])


def test_same_seed_and_index_give_identical_scenes(assets):
    a, b = PhotoSceneDataset(assets, seed=3, size=96), PhotoSceneDataset(assets, seed=3, size=96)
    for i in (0, 5):
        assert np.array_equal(a[i][0], b[i][0])
        assert np.array_equal(a[i][1], b[i][1])
    c = PhotoSceneDataset(assets, seed=4, size=96)
    assert not np.array_equal(a[5][0], c[5][0])


def test_visible_masks_are_the_pasted_alpha_minus_what_later_objects_cover(assets):
    for i in range(10):
        rng = np.random.default_rng([0, i])
        s = compose_scene(rng, assets, 96, n_objects=(3, 5), p_part=0, jitter=False, min_area=0)
        assert len(s.masks) == len(s.full) >= 3
        for k in range(len(s.full)):
            later = s.full[k + 1 :].any(0) if k + 1 < len(s.full) else np.zeros((96, 96), bool)
            assert np.array_equal(s.masks[k], s.full[k] & ~later)
            assert s.object_ids[k] == k and s.kinds[k] == 0


def test_visible_pixels_show_the_object_that_owns_the_mask(assets):
    rng = np.random.default_rng(1)
    s = compose_scene(rng, assets, 96, n_objects=(4, 4), p_textured=0, p_part=0, jitter=False)
    for m in s.masks:
        core = cv2.erode(m.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0  # past soft edges
        if core.sum() < 5:
            continue
        colors = s.image[core].astype(int)
        # one flat sprite colour inside the core, far from the grey background
        assert np.abs(colors - colors[0]).max() <= 2
        assert tuple(colors[0]) in {tuple(c) for c in COLORS}


def test_parts_lie_inside_their_whole_object(assets):
    seen = False
    for i in range(10):
        s = compose_scene(np.random.default_rng([2, i]), assets, 96, p_part=1.0, min_area=0)
        for j in np.nonzero(s.kinds == 1)[0]:
            whole = s.masks[(s.object_ids == s.object_ids[j]) & (s.kinds == 0)][0]
            assert not (s.masks[j] & ~whole).any()
            seen = seen or s.masks[j].any()
    assert seen


def test_scenes_are_uint8_images_with_bool_masks_of_the_scene_size(assets):
    data = PhotoSceneDataset(assets, seed=0, size=64)
    for i in range(8):
        image, masks = data[i]
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert masks.dtype == bool and masks.shape[1:] == (64, 64)
        if len(masks):
            assert masks.reshape(len(masks), -1).sum(1).min() >= 6  # 0.15% of the scene


def test_mix_gives_photo_and_procedural_scenes(assets):
    mix = MixDataset(PhotoSceneDataset(assets, seed=0, size=64), seed=0, p_photo=0.5)
    photo = PhotoSceneDataset(assets, seed=0, size=64)
    same = [np.array_equal(mix[i][0], photo[i][0]) for i in range(20)]
    assert any(same) and not all(same)


def write_assets(root, n_sprites: int = 40, n_backgrounds: int = 20) -> None:
    (root / "sprites" / "toy").mkdir(parents=True)
    (root / "backgrounds").mkdir()
    for i in range(n_sprites):
        cv2.imwrite(str(root / "sprites" / "toy" / f"s{i}.png"), disk_sprite(COLORS[i % 5], 16))
    for i in range(n_backgrounds):
        cv2.imwrite(str(root / "backgrounds" / f"b{i}.jpg"), np.full((32, 32, 3), i, np.uint8))


def test_held_out_assets_are_never_in_the_training_split(tmp_path):
    write_assets(tmp_path)
    train = AssetLibrary.from_folder(tmp_path, "train")
    held = AssetLibrary.from_folder(tmp_path, "eval")
    for a, b in ((train.sprites, held.sprites), (train.backgrounds, held.backgrounds)):
        assert a and b and not set(a) & set(b)
    assert all(is_held_out(p.name) for p in held.sprites + held.backgrounds)
    assert len(train.sprites) + len(held.sprites) == 40


def test_open_dataset_reads_photo_and_mix_specs_from_the_assets_folder(tmp_path, monkeypatch):
    write_assets(tmp_path)
    monkeypatch.setenv("SAMKIT_ASSETS", str(tmp_path))
    train = open_dataset("photo", 64)
    held = open_dataset("photo", 64, split="eval", limit=7)
    assert train.seed != held.seed and len(held) == 7
    assert all(is_held_out(p.name) for p in held.assets.sprites)
    assert open_dataset("photo:5", 64).seed == 5
    mix = open_dataset("mix:2", 64)
    assert isinstance(mix, MixDataset) and mix.photo.seed == 2
    image, masks = mix[0]
    assert image.shape == (64, 64, 3)


def test_missing_assets_say_how_to_build_them(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMKIT_ASSETS", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="build_training_assets.py"):
        open_dataset("photo", 64)


def test_patch_8_tiny_config_is_inferred_from_its_weights(tmp_path):
    import samkit
    from samkit.checkpoints import save_safetensors
    from samkit.models import CONFIGS, build_sam

    path = tmp_path / "p8.safetensors"
    save_safetensors(build_sam("tiny_p8"), path)
    model = samkit.load(str(path), device="cpu")
    assert model.config == CONFIGS["tiny_p8"]
    assert model.image_size == 160
