"""PerSAM beyond one reference: several objects in one fit (disjoint masks, merged by the largest
logit), several references of one object (few-shot) and absent objects (presence score)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import samkit
from samkit.cli import main
from samkit.data.synthetic import SceneGenerator
from samkit.errors import PromptError
from samkit.persam import MultiPerSAM, PerSAM, PersonalizedMask
from samkit.persam.multi import merge_by_logit


@pytest.fixture(scope="module")
def model():
    return samkit.load("samkit-tiny", precision="fp32")


@pytest.fixture(scope="module")
def scenes():
    """Two concepts, each in 3 scenes (160 x 160): (scenes, mask of the concept in each)."""
    out = []
    for c in (0, 1):
        _, sc = SceneGenerator(seed=5, size=160).concept_scenes(c, n=3)
        out.append((sc, [s.masks[(s.concept_ids == 0) & (s.kinds == 0)][0] for s in sc]))
    return out


def result(logits: np.ndarray, present: bool = True) -> PersonalizedMask:
    z = np.zeros(2)
    return PersonalizedMask(
        logits > 0, 0.5, z, z, logits, presence=1.0, present=present, logits=logits
    )


def test_merge_gives_each_pixel_to_the_largest_positive_logit_over_a_zero_background():
    a = np.array([[2.0, -1.0, 0.5, 1.0]], np.float32)
    b = np.array([[1.0, -2.0, 3.0, 1.0]], np.float32)
    # pixel 0: a wins; 1: all negative -> background; 2: b wins; 3: tie -> the first object
    assert merge_by_logit([result(a), result(b)]).tolist() == [[1, 0, 2, 1]]


def test_merge_gives_no_pixel_to_an_absent_object():
    a = np.array([[2.0, 5.0]], np.float32)
    b = np.array([[1.0, -1.0]], np.float32)
    assert merge_by_logit([result(a, present=False), result(b)]).tolist() == [[2, 0]]


def test_several_objects_give_disjoint_named_masks(model, scenes):
    (sc0, m0), (sc1, m1) = scenes
    multi = MultiPerSAM(model, faithful=False, presence_threshold=None).fit(
        [(sc0[0].image, m0[0], "first"), (sc1[0].image, m1[0], "second")]
    )
    res = multi.segment(sc0[1].image)
    assert res.names == ["first", "second"]
    assert res.masks.shape == (2, 160, 160)
    assert res.masks.sum(0).max() <= 1  # each pixel in at most one object
    assert np.array_equal(res["second"], res.labels == 2)
    single = PerSAM(model, faithful=False, presence_threshold=None).fit(sc0[0].image, m0[0])
    alone = single.segment(sc0[1].image)
    np.testing.assert_array_equal(res.objects[0].points, alone.points)
    assert not (res["first"] & ~alone.mask).any()  # the merge only takes pixels away


def test_references_sharing_a_name_are_one_object(model, scenes):
    (sc0, m0), _ = scenes
    multi = MultiPerSAM(model, faithful=False).fit(
        [(sc0[0].image, m0[0], "a"), (sc0[1].image, m0[1], "a")]
    )
    assert multi.names == ["a"]
    few = PerSAM(model, faithful=False).fit([sc0[0].image, sc0[1].image], [m0[0], m0[1]])
    assert np.array_equal(multi.objects[0].target_feat, few.target_feat)


def test_one_reference_in_a_list_is_the_one_shot_fit(model, scenes):
    (sc0, m0), _ = scenes
    one = PerSAM(model, faithful=False).fit(sc0[0].image, m0[0])
    listed = PerSAM(model, faithful=False).fit([sc0[0].image], [m0[0]])
    assert np.array_equal(one.target_embedding, listed.target_embedding)


def test_few_shot_target_is_the_mean_of_each_references_target(model, scenes):
    (sc0, m0), _ = scenes
    a = PerSAM(model, faithful=False).fit(sc0[0].image, m0[0]).target_embedding
    b = PerSAM(model, faithful=False).fit(sc0[1].image, m0[1]).target_embedding
    both = PerSAM(model, faithful=False).fit([sc0[0].image, sc0[1].image], [m0[0], m0[1]])
    np.testing.assert_allclose(both.target_embedding, (a + b) / 2, atol=1e-6)


def test_few_shot_location_prior_is_the_union_of_each_references_prior(model, scenes):
    (sc0, m0), _ = scenes
    a = PerSAM(model, faithful=False).fit(sc0[0].image, m0[0])
    b = PerSAM(model, faithful=False).fit(sc0[1].image, m0[1])
    both = PerSAM(model, faithful=False).fit([sc0[0].image, sc0[1].image], [m0[0], m0[1]])
    emb = both.embed([sc0[2].image])[0]
    want = np.maximum(a._similarity(emb).numpy(), b._similarity(emb).numpy())
    np.testing.assert_allclose(both.segment_embedding(emb).similarity, want, atol=1e-6)


def test_few_shot_persam_f_fits_its_weights_on_every_reference(model, scenes):
    (sc0, m0), _ = scenes
    per = PerSAM(model, finetune=True, faithful=False, steps=50)
    per.fit([sc0[0].image, sc0[1].image], [m0[0], m0[1]])
    assert per.scale_weights.shape == (3,)
    assert per.segment(sc0[2].image).mask.shape == (160, 160)


def test_mismatched_reference_lists_give_prompt_error(model, scenes):
    (sc0, m0), _ = scenes
    with pytest.raises(PromptError, match="one mask per reference image"):
        PerSAM(model).fit([sc0[0].image, sc0[1].image], [m0[0]])


def test_absent_object_gives_an_empty_mask_and_present_false(model, scenes):
    (sc0, m0), _ = scenes
    per = PerSAM(model, faithful=False, presence_threshold=10.0).fit(sc0[0].image, m0[0])
    out = per.segment(sc0[1].image)
    assert not out.present and not out.mask.any()
    assert out.presence < 10.0 and out.logits is not None and (out.logits > 0).any()


def test_presence_is_one_on_the_reference_object_itself(model, scenes):
    (sc0, m0), _ = scenes
    per = PerSAM(model, faithful=False).fit(sc0[0].image, m0[0])
    emb = per.embed([sc0[0].image])[0]
    assert per.presence(emb, m0[0]) > 0.9  # the region is the reference: (c - b) / (1 - b) ~ 1
    assert per.presence(emb, np.zeros_like(m0[0])) == float("-inf")


def test_without_threshold_every_image_gets_a_mask(model, scenes):
    (sc0, m0), (sc1, _) = scenes
    per = PerSAM(model, faithful=False, presence_threshold=None).fit(sc0[0].image, m0[0])
    out = per.segment(sc1[1].image)
    assert out.present and np.array_equal(out.mask, out.logits > 0)


def test_cli_personalize_several_objects_writes_an_indexed_png_and_names(tmp_path, scenes, capsys):
    (sc0, m0), (sc1, m1) = scenes
    for name, arr in (("r0", sc0[0].image), ("r1", sc1[0].image), ("t", sc0[1].image)):
        Image.fromarray(arr).save(tmp_path / f"{name}.png")
    for name, arr in (("m0", m0[0]), ("m1", m1[0])):
        Image.fromarray(arr.astype(np.uint8) * 255).save(tmp_path / f"{name}.png")
    args = ["personalize", "--model", "samkit-tiny", "--fixed", "--always", "-o"]
    args += [str(tmp_path / "out"), str(tmp_path / "t.png")]
    args += ["--ref", str(tmp_path / "r0.png"), "--ref-mask", str(tmp_path / "m0.png")]
    args += ["--name", "cat", "--ref", str(tmp_path / "r1.png")]
    args += ["--ref-mask", str(tmp_path / "m1.png"), "--name", "dog"]
    assert main(args) == 0
    labels = Image.open(tmp_path / "out" / "t.png")
    assert labels.mode == "P" and set(np.unique(np.array(labels))) <= {0, 1, 2}
    assert json.loads((tmp_path / "out" / "objects.json").read_text()) == {"1": "cat", "2": "dog"}
    assert "cat score" in capsys.readouterr().out


def test_cli_personalize_names_must_match_references(tmp_path, capsys):
    args = ["personalize", "--ref", "a.png", "--ref-mask", "m.png", "--ref", "b.png"]
    args += ["--ref-mask", "n.png", "--name", "x", "t.png", "-o", str(tmp_path)]
    assert main(args) == 2
    assert "one per --ref" in capsys.readouterr().err


def test_cli_personalize_repeated_refs_without_names_are_one_object(tmp_path, scenes, capsys):
    (sc0, m0), _ = scenes
    for i in range(3):
        Image.fromarray(sc0[i].image).save(tmp_path / f"i{i}.png")
        Image.fromarray(m0[i].astype(np.uint8) * 255).save(tmp_path / f"m{i}.png")
    args = ["personalize", "--model", "samkit-tiny", "--fixed", "-o", str(tmp_path / "out")]
    args += [str(tmp_path / "i2.png")]
    for i in range(2):
        args += ["--ref", str(tmp_path / f"i{i}.png"), "--ref-mask", str(tmp_path / f"m{i}.png")]
    assert main(args) == 0
    assert Image.open(tmp_path / "out" / "i2.png").mode == "L"  # one object: a 0/255 mask
    assert not (tmp_path / "out" / "objects.json").exists()
    assert "presence" in capsys.readouterr().out
