"""The procedural scene generator: seeded, non-empty masks, nested parts, reappearing concepts."""

import numpy as np

from samkit.data.synthetic import (
    SHAPES,
    TEXTURES,
    SceneGenerator,
    SyntheticDataset,
    draw_shape,
    draw_texture,
)


def test_same_seed_and_index_give_identical_scenes():
    a, b = SceneGenerator(3, 96).scene(7), SceneGenerator(3, 96).scene(7)
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.masks, b.masks)


def test_different_seeds_give_different_scenes():
    a, b = SceneGenerator(3, 96).scene(7), SceneGenerator(4, 96).scene(7)
    assert not np.array_equal(a.image, b.image)


def test_scenes_have_several_nonempty_masks_of_the_image_size():
    gen = SceneGenerator(0, 96)
    for i in range(20):
        s = gen.scene(i)
        assert s.image.shape == (96, 96, 3) and s.image.dtype == np.uint8
        assert s.masks.shape[1:] == (96, 96) and s.masks.dtype == bool
        assert len(s.masks) >= 1
        assert s.masks.reshape(len(s.masks), -1).sum(1).min() >= 40
        assert len(s.object_ids) == len(s.kinds) == len(s.masks)


def test_parts_lie_inside_their_whole_object():
    gen = SceneGenerator(0, 128)
    seen_part = False
    for i in range(40):
        s = gen.scene(i)
        for j in np.nonzero(s.kinds > 0)[0]:
            seen_part = True
            whole = s.masks[(s.object_ids == s.object_ids[j]) & (s.kinds == 0)]
            if len(whole):  # the whole may be hidden; when visible it contains the part
                assert not (s.masks[j] & ~whole[0]).any()
    assert seen_part


def test_every_shape_and_texture_draws():
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        assert draw_shape(rng, shape, 64).sum() > 20, shape
    for tex in TEXTURES:
        t = draw_texture(rng, tex, 32, 32)
        assert t.shape == (32, 32, 3) and 0 <= t.min() and t.max() <= 255


def test_a_concept_reappears_with_a_new_pose_and_background():
    concept, scenes = SceneGenerator(0, 128).concept_scenes(5, n=3)
    masks = [s.masks[(s.concept_ids == 0) & (s.kinds == 0)] for s in scenes]
    assert all(len(m) == 1 for m in masks)
    # same object (its pixels carry the concept's colours) but placed differently
    assert not np.array_equal(masks[0][0], masks[1][0])
    assert not np.array_equal(scenes[0].image, scenes[1].image)
    mean_color = [s.image[m[0]].mean(0) for s, m in zip(scenes, masks)]
    ref = concept.image[concept.masks[0]].mean(0)
    for c in mean_color:
        assert np.abs(c - ref).max() < 40


def test_dataset_items_are_image_and_masks():
    image, masks = SyntheticDataset(seed=1, size=64)[3]
    assert image.shape == (64, 64, 3) and masks.shape[1:] == (64, 64)
