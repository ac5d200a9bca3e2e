"""ONNX export: the decoder has the official SamOnnxModel signature and gives the official
export's numbers under onnxruntime; OnnxPredictor gives the PyTorch path's outputs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import synthetic_image
from official import random_state_dict

from samkit.export.onnx import (
    DECODER_INPUTS,
    DECODER_OUTPUTS,
    OnnxPredictor,
    export_decoder,
    export_encoder,
    export_onnx,
    quantize_int8,
)
from samkit.export.parity import official_export, random_feed
from samkit.models import build_sam
from samkit.predictor import Predictor

TOL = 1e-3


def _run(path, feed):  # type: ignore[no-untyped-def]
    return ort.InferenceSession(str(path)).run(None, feed)


@pytest.mark.parametrize("return_single_mask", [False, True])
def test_decoder_matches_official_export(tmp_path, twins, return_single_mask) -> None:  # type: ignore[no-untyped-def]
    off, ours = twins
    official_export(off, tmp_path / "official.onnx", return_single_mask=return_single_mask)
    export_decoder(ours, tmp_path / "samkit.onnx", return_single_mask=return_single_mask)
    a = ort.InferenceSession(str(tmp_path / "official.onnx"))
    b = ort.InferenceSession(str(tmp_path / "samkit.onnx"))
    assert [i.name for i in b.get_inputs()] == [i.name for i in a.get_inputs()] == DECODER_INPUTS
    assert [o.name for o in b.get_outputs()] == [o.name for o in a.get_outputs()]
    assert [o.name for o in b.get_outputs()] == DECODER_OUTPUTS
    for seed, n_points in enumerate([1, 2, 3, 6]):  # the number of points is dynamic
        feed = random_feed(ours, n_points, seed)
        for x, y in zip(a.run(None, feed), b.run(None, feed)):
            assert x.shape == y.shape
            assert np.abs(x - y).max() <= TOL


@pytest.mark.parametrize("orig_im_size", [(500, 400), (1000, 1000), (77, 1300)])
def test_masks_match_official_model_at_any_image_size(tmp_path, twins, orig_im_size) -> None:  # type: ignore[no-untyped-def]
    # The official *export* crops every image as if it had its dummy's 2:3 aspect ratio (the
    # tracer freezes its int() slice bounds); samkit's follows orig_im_size, as the official
    # PyTorch module does.
    from segment_anything.utils.onnx import SamOnnxModel

    off, ours = twins
    export_decoder(ours, tmp_path / "samkit.onnx")
    feed = random_feed(ours, 2, seed=5)
    feed["orig_im_size"] = np.array(orig_im_size, np.float32)
    with torch.no_grad():
        want = SamOnnxModel(off, return_single_mask=False)(
            *[torch.from_numpy(feed[k]) for k in DECODER_INPUTS]
        )
    got = _run(tmp_path / "samkit.onnx", feed)
    for x, y in zip(want, got):
        assert x.shape == y.shape
        assert np.abs(x.numpy() - y).max() <= TOL


@pytest.mark.parametrize(
    "options",
    [{}, {"hq_token_only": True}, {"multimask_output": True}],
    ids=["default", "hq_token_only", "multimask_output"],
)
def test_hq_decoder_matches_official_hq_export(tmp_path, twins_hq, options) -> None:  # type: ignore[no-untyped-def]
    off, ours = twins_hq
    official_export(off, tmp_path / "official.onnx", hq=True, **options)
    export_decoder(ours, tmp_path / "samkit.onnx", **options)
    for seed, n_points in enumerate([1, 4]):
        feed = random_feed(ours, n_points, seed, hq=True)
        for x, y in zip(
            _run(tmp_path / "official.onnx", feed), _run(tmp_path / "samkit.onnx", feed)
        ):
            assert x.shape == y.shape
            assert np.abs(x - y).max() <= TOL


@pytest.fixture(scope="module")
def both(tmp_path_factory, small_cfg):  # type: ignore[no-untyped-def]
    model = build_sam(replace(small_cfg, image_size=256, window_size=8))
    model.load_state_dict(random_state_dict(model, seed=3))
    d = tmp_path_factory.mktemp("onnx")
    export_onnx(model, d)
    image = synthetic_image(240, 360, seed=21)
    ort_pred, pt = OnnxPredictor(d), Predictor(model)
    ort_pred.set_image(image)
    pt.set_image(image)
    return ort_pred, pt, model, image


def test_encoder_matches_pytorch(both) -> None:  # type: ignore[no-untyped-def]
    ort_pred, pt, _, _ = both
    assert np.abs(ort_pred.embedding - pt.embedding.features.embeddings.numpy()).max() <= TOL


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize(
    "prompt",
    [
        dict(points=[[100, 120]], labels=[1]),
        dict(points=[[100, 120], [300, 40]], labels=[1, 0]),
        dict(box=[40, 30, 250, 200]),
        dict(points=[[100, 120]], labels=[1], box=[40, 30, 250, 200]),
    ],
    ids=["point", "points", "box", "box_and_point"],
)
def test_decoder_matches_pytorch(both, prompt, multimask) -> None:  # type: ignore[no-untyped-def]
    ort_pred, pt, _, _ = both
    a = ort_pred.predict(**prompt, multimask=multimask)
    b = pt.predict(**prompt, multimask=multimask)
    assert np.abs(a.logits - b.logits).max() <= TOL
    assert np.abs(a.scores - b.scores).max() <= TOL
    assert (a.masks == b.masks).mean() >= 0.999


def test_mask_input_matches_pytorch(both) -> None:  # type: ignore[no-untyped-def]
    ort_pred, pt, _, _ = both
    first = pt.predict([[100, 120]], [1])
    mi = first.logits[[int(first.scores.argmax())]]
    a = ort_pred.predict([[100, 120]], [1], mask_input=mi, multimask=False)
    b = pt.predict([[100, 120]], [1], mask_input=mi, multimask=False)
    assert np.abs(a.logits - b.logits).max() <= TOL


def test_encoder_with_preprocessing_matches_pytorch(both, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from samkit.transforms import resize_image

    ort_pred, pt, model, image = both
    path = export_encoder(model, tmp_path / "encoder.onnx", preprocess=True)
    sess = ort.InferenceSession(str(path))
    assert [i.name for i in sess.get_inputs()] == ["input_image"]
    # An image already resized to the long side: normalise + pad only, exactly the PyTorch path.
    resized = resize_image(image, model.image_size).astype(np.float32)
    (emb,) = sess.run(None, {"input_image": resized})
    assert np.abs(emb - pt.embedding.features.embeddings.numpy()).max() <= TOL
    # The original size: the in-graph antialiased resize stands in for PIL's.
    (emb_full,) = sess.run(None, {"input_image": image.astype(np.float32)})
    ref = pt.embedding.features.embeddings.numpy()
    cos = (emb_full * ref).sum() / np.linalg.norm(emb_full) / np.linalg.norm(ref)
    assert cos > 0.99


def test_hq_predictor_matches_pytorch(tmp_path, small_cfg) -> None:  # type: ignore[no-untyped-def]
    model = build_sam(replace(small_cfg, image_size=256, window_size=8, hq=True))
    model.load_state_dict(random_state_dict(model, seed=4))
    image = synthetic_image(200, 256, seed=5)
    pt = Predictor(model)
    pt.set_image(image)
    for hq_only in (False, True):
        d = tmp_path / str(hq_only)
        export_onnx(model, d, hq_token_only=hq_only)
        o = OnnxPredictor(d)
        o.set_image(image)
        a = o.predict([[100, 120]], [1], multimask=False)
        b = pt.predict([[100, 120]], [1], multimask=False, hq_token_only=hq_only)
        assert np.abs(a.logits - b.logits).max() <= TOL
        assert (a.masks == b.masks).mean() >= 0.999


def test_int8_copy_runs_and_agrees_with_fp32(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import samkit
    from samkit.export.benchmark import mask_agreement

    model = samkit.load("samkit-tiny")
    export_onnx(model, tmp_path)
    for name in ("encoder", "decoder"):
        quantize_int8(tmp_path / f"{name}.onnx", tmp_path / f"{name}.int8.onnx")
        assert (tmp_path / f"{name}.int8.onnx").stat().st_size < (
            tmp_path / f"{name}.onnx"
        ).stat().st_size
    image = synthetic_image(160, 200, seed=7)
    fp32, int8 = OnnxPredictor(tmp_path), OnnxPredictor(tmp_path, int8=True)
    fp32.set_image(image)
    int8.set_image(image)
    prompts = [dict(points=[[60, 70]], labels=[1]), dict(box=[20, 20, 150, 120])]
    assert mask_agreement(fp32, int8, prompts) > 0.5
    mixed = OnnxPredictor(tmp_path, int8="encoder")  # int8 encoder, float decoder
    mixed.set_image(image)
    assert mask_agreement(fp32, mixed, prompts) > 0.5


@pytest.mark.parametrize("shape,size", [((240, 360), 256), ((300, 200), 1024), ((97, 131), 64)])
def test_in_graph_resize_is_pils_bilinear_up_to_rounding(shape, size) -> None:  # type: ignore[no-untyped-def]
    from samkit.export.onnx import _resize_matrix
    from samkit.transforms import preprocess_shape, resize_image

    image = synthetic_image(*shape, seed=9)
    nh, nw = preprocess_shape(*shape, size)
    x = torch.from_numpy(image).float().permute(2, 0, 1)
    rows = _resize_matrix(torch.tensor(float(shape[0])), torch.tensor(nh))
    cols = _resize_matrix(torch.tensor(float(shape[1])), torch.tensor(nw))
    out = (rows @ x @ cols.T).permute(1, 2, 0).numpy()
    assert np.abs(out - resize_image(image, size)).max() <= 1.0


def test_tiny_vit_encoder_export_matches_pytorch_and_leaves_the_model_in_eval(tmp_path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = build_sam("vit_t").eval()
    x = torch.randn(1, 3, 1024, 1024)
    with torch.no_grad():
        want = model.image_encoder(x).numpy()
    path = export_encoder(model, tmp_path / "encoder.onnx")
    assert not any(m.training for m in model.modules())  # batch norms keep running statistics
    (got,) = _run(path, {"image": x.numpy()})
    assert np.abs(got - want).max() <= TOL
