"""samkit's TinyViT equals the official MobileSAM and Light HQ-SAM code on the same random weights.

Random means every tensor: BatchNorm running statistics and the attention bias tables too (their
defaults, zero mean, unit variance and zero biases, would hide folding and indexing bugs). The
official TinyViT fixes its grid at 64 x 64, so the encoder runs at 1024 px.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from conftest import perseg_image, synthetic_image
from official import parity_prompts, random_tiny_vit_state
from official import tiny_vit_twins as twin_models

from samkit.checkpoints import infer_tiny_vit
from samkit.models import Sam
from samkit.models.tiny_vit import (
    MOBILE_SAM,
    TinyViT,
    TinyViTConfig,
    build_tiny_vit_encoder,
)

TOL = 1e-4
MASK_AGREEMENT = 0.999

with warnings.catch_warnings():  # timm's deprecation and registry warnings
    warnings.simplefilter("ignore")
    import mobile_sam
    import segment_anything_hq


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mobile_twins():  # type: ignore[no-untyped-def]
    return twin_models(hq=False, seed=0)


@pytest.fixture(scope="module")
def hq_twins():  # type: ignore[no-untyped-def]
    return twin_models(hq=True, seed=1)


class Twins:
    """One image embedded by the official predictor and by samkit's model, from the same
    resized pixels; prompts are mapped to the input frame by the official transform."""

    def __init__(self, off, ours: Sam, image: np.ndarray) -> None:  # type: ignore[no-untyped-def]
        pkg = segment_anything_hq if ours.is_hq else mobile_sam
        self.po = pkg.SamPredictor(off)
        self.po.set_image(image)
        self.ours = ours
        self.image = image
        resized = self.po.transform.apply_image(image)
        self.input_size = resized.shape[:2]
        self.resized = torch.as_tensor(resized).permute(2, 0, 1)[None].float()
        with torch.no_grad():
            self.features = ours.embed(self.resized)

    def predict(self, p: dict, multimask: bool, hq_token_only: bool = False):  # type: ignore[no-untyped-def]
        kw = dict(hq_token_only=hq_token_only) if self.ours.is_hq else {}
        masks, iou, low = self.po.predict(
            point_coords=p.get("points"),
            point_labels=p.get("labels"),
            box=p.get("box"),
            multimask_output=multimask,
            **kw,
        )
        size = self.image.shape[:2]
        points = boxes = None
        if "points" in p:
            xy = torch.as_tensor(self.po.transform.apply_coords(p["points"], size)).float()
            points = (xy[None], torch.as_tensor(p["labels"])[None])
        if "box" in p:
            boxes = torch.as_tensor(self.po.transform.apply_boxes(p["box"][None], size)).float()
        with torch.no_grad():
            ours_low, ours_iou = self.ours.decode(
                self.features, points, boxes, None, multimask, hq_token_only=hq_token_only
            )
            logits = self.ours.postprocess_masks(ours_low, self.input_size, size)
        ours_masks = (logits > self.ours.mask_threshold)[0].numpy()
        return (masks, iou, low), (ours_masks, ours_iou[0].numpy(), ours_low[0].numpy())


def _assert_same(official, ours) -> None:  # type: ignore[no-untyped-def]
    masks, iou, low = official
    ours_masks, ours_iou, ours_low = ours
    assert ours_low.shape == low.shape
    assert np.abs(ours_low - low).max() <= TOL
    assert np.abs(ours_iou - iou).max() <= TOL
    assert ours_masks.shape == masks.shape
    assert (ours_masks == masks).mean() >= MASK_AGREEMENT


# -- MobileSAM ------------------------------------------------------------------------------


@pytest.fixture(
    scope="module",
    params=[
        ("cat_portrait", lambda: perseg_image("cat/00.jpg")[:, 200:900]),
        ("synthetic_wide", lambda: synthetic_image(300, 520, seed=3)),
    ],
    ids=lambda p: p[0],
)
def mobile(request, mobile_twins) -> Twins:  # type: ignore[no-untyped-def]
    return Twins(*mobile_twins, request.param[1]())


def test_tiny_vit_has_the_official_parameter_and_buffer_names(mobile_twins) -> None:  # type: ignore[no-untyped-def]
    off, ours = mobile_twins
    official = off.image_encoder.state_dict()
    own = ours.image_encoder.state_dict()
    assert list(own) == list(official)
    assert all(own[k].shape == official[k].shape for k in own)
    off_idx = {n: b for n, b in off.image_encoder.named_buffers() if "bias_idxs" in n}
    own_idx = {n: b for n, b in ours.image_encoder.named_buffers() if "bias_idxs" in n}
    assert off_idx.keys() == own_idx.keys() and len(own_idx) == 10
    assert all(torch.equal(off_idx[n], own_idx[n]) for n in own_idx)


def test_mobile_sam_embedding_matches_official(mobile) -> None:
    diff = (mobile.po.features - mobile.features.embeddings).abs().max().item()
    assert diff <= TOL


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("prompt", ["one_point", "points_with_negatives", "box"])
def test_mobile_sam_prompt_matches_official(mobile, prompt, multimask) -> None:  # type: ignore[no-untyped-def]
    h, w = mobile.image.shape[:2]
    _assert_same(*mobile.predict(parity_prompts(h, w)[prompt], multimask))


# -- Light HQ-SAM ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def light_hq(hq_twins) -> Twins:  # type: ignore[no-untyped-def]
    return Twins(*hq_twins, perseg_image("duck_toy/01.jpg")[200:1100])


def test_light_hq_sam_embedding_and_early_features_match_official(light_hq) -> None:  # type: ignore[no-untyped-def]
    po, feats = light_hq.po, light_hq.features
    assert (po.features - feats.embeddings).abs().max().item() <= TOL
    # The HQ head's fusion of the stage-1 features (B x 64 x 64 x 160) with the embedding.
    off_dec = po.model.mask_decoder
    with torch.no_grad():
        vit = po.interm_features[0].permute(0, 3, 1, 2)
        official_hq = off_dec.embedding_encoder(po.features) + off_dec.compress_vit_feat(vit)
    assert po.interm_features[0].shape == (1, 64, 64, 160)
    assert (official_hq - feats.hq_features).abs().max().item() <= TOL


@pytest.mark.parametrize("hq_token_only", [False, True])
@pytest.mark.parametrize(("prompt", "multimask"), [("points_with_negatives", True), ("box", False)])
def test_light_hq_sam_prompt_matches_official(light_hq, prompt, multimask, hq_token_only) -> None:  # type: ignore[no-untyped-def]
    h, w = light_hq.image.shape[:2]
    _assert_same(*light_hq.predict(parity_prompts(h, w)[prompt], multimask, hq_token_only))


# -- reading checkpoints ----------------------------------------------------------------------


def test_infer_tiny_vit_reads_mobile_sam_and_light_hq_sam(mobile_twins, hq_twins) -> None:  # type: ignore[no-untyped-def]
    for off, _ in (mobile_twins, hq_twins):
        found = infer_tiny_vit(off.state_dict())
        assert found == {"config": MOBILE_SAM, "out_chans": 256}


def test_infer_tiny_vit_reads_other_widths_and_loads_them_strictly() -> None:
    """TinyViT-11M's numbers (the official model zoo's next size) from the weights alone."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mobile_sam.modeling.tiny_vit_sam import TinyViT as OfficialTinyViT

    numbers = dict(embed_dims=[64, 128, 256, 448], depths=[2, 2, 6, 2], num_heads=[2, 4, 8, 14])
    official = OfficialTinyViT(img_size=1024, window_sizes=[7, 7, 14, 7], **numbers)
    state = {"image_encoder." + k: v for k, v in official.state_dict().items()}
    found = infer_tiny_vit(state)
    assert found is not None
    config = found["config"]
    assert config == TinyViTConfig(**{k: tuple(v) for k, v in numbers.items()})
    assert config.interm_dim == 256
    build_tiny_vit_encoder(config).load_state_dict(official.state_dict(), strict=True)


def test_infer_tiny_vit_answers_none_for_a_vit_checkpoint(twins) -> None:  # type: ignore[no-untyped-def]
    off, _ = twins
    assert infer_tiny_vit(off.state_dict()) is None


def test_build_sam_vit_t_and_hq_vit_tiny_match_official_layouts(mobile_twins, hq_twins) -> None:  # type: ignore[no-untyped-def]
    from samkit.models import build_sam

    for name, (off, _) in (("vit_t", mobile_twins), ("hq_vit_tiny", hq_twins)):
        own = build_sam(name).state_dict()
        official = off.state_dict()
        assert own.keys() == official.keys()
        assert all(own[k].shape == official[k].shape for k in own), name


def test_samkit_load_reads_mobile_sam_and_light_hq_sam(tmp_path, mobile_twins, hq_twins) -> None:  # type: ignore[no-untyped-def]
    import samkit
    from samkit.models import CONFIGS

    files = {"vit_t": ("mobile_sam.pt", mobile_twins), "hq_vit_tiny": ("hq.pth", hq_twins)}
    for config, (name, (off, _)) in files.items():
        torch.save(off.state_dict(), tmp_path / name)
        model = samkit.load(tmp_path / name)
        assert model.config == CONFIGS[config]
        assert isinstance(model.image_encoder, TinyViT)
        for k, v in off.state_dict().items():
            assert torch.equal(model.state_dict()[k], v), k


def test_tiny_vit_model_round_trips_through_safetensors(tmp_path) -> None:
    """samkit's own TinyViTs (any width, any input size) keep their configuration."""
    from dataclasses import replace

    import samkit
    from samkit.checkpoints import save_safetensors
    from samkit.models import CONFIGS, build_sam

    narrow = TinyViTConfig((32, 64, 80, 160), (1, 2, 2, 1), (1, 2, 5, 5), (7, 7, 7, 7))
    config = replace(CONFIGS["hq_vit_tiny"], tiny_vit=narrow, image_size=256)
    model = build_sam(config)
    save_safetensors(model, tmp_path / "narrow.safetensors")
    loaded = samkit.load(tmp_path / "narrow.safetensors")
    assert loaded.config == config
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        a, b = model.encode(x), loaded.encode(x)
    assert torch.equal(a.embeddings, b.embeddings) and a.embeddings.shape == (1, 256, 16, 16)
    assert torch.equal(a.hq_features, b.hq_features)  # type: ignore[arg-type]


def test_checkpoint_with_an_unknown_encoder_says_so(tmp_path, twins) -> None:  # type: ignore[no-untyped-def]
    import samkit
    from samkit.errors import CheckpointError

    _, sam = twins
    state = {k: v for k, v in sam.state_dict().items() if not k.startswith("image_encoder.")}
    state["image_encoder.trunk.patch_embed.proj.weight"] = torch.zeros(96, 3, 7, 7)
    torch.save(state, tmp_path / "hiera.pth")
    with pytest.raises(CheckpointError, match="does not know this checkpoint's image encoder") as e:
        samkit.load(tmp_path / "hiera.pth")
    assert "image_encoder.trunk.patch_embed.proj.weight" in str(e.value)


def test_light_hq_sam_runs_in_bf16(light_hq) -> None:  # type: ignore[no-untyped-def]
    """Sam.set_precision casts the encoder (BatchNorm statistics and bias tables included)."""
    import copy

    low = copy.deepcopy(light_hq.ours).set_precision(torch.bfloat16)
    with torch.no_grad():
        got = low.embed(light_hq.resized)
    ref = light_hq.features
    for a, b in ((ref.embeddings, got.embeddings), (ref.hq_features, got.hq_features)):
        assert a is not None and b is not None and b.dtype == torch.float32
        assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.99


def test_predictor_matches_official_mobile_sam(mobile) -> None:
    from samkit.predictor import Predictor

    pk = Predictor(mobile.ours)
    pk.set_image(mobile.image)
    assert (mobile.po.features - pk.embedding.features.embeddings).abs().max().item() <= TOL
    h, w = mobile.image.shape[:2]
    p = parity_prompts(h, w)["points_with_negatives"]
    res = pk.predict(p["points"], p["labels"], multimask=True)
    (masks, iou, low), _ = mobile.predict(p, True)
    assert np.abs(res.logits - low).max() <= TOL
    assert np.abs(res.scores - iou).max() <= TOL
    assert (res.masks == masks).mean() >= MASK_AGREEMENT


# -- the inference shortcuts keep the training maths --------------------------------------------


def _small_encoder(seed: int) -> TinyViT:
    enc = build_tiny_vit_encoder()
    enc.load_state_dict(random_tiny_vit_state(enc, seed))
    return enc


def test_folded_batchnorm_and_gathered_biases_follow_new_weights() -> None:
    """Eval mode keeps the folded convolutions and bias tables between calls; loading other
    weights must replace them."""
    x = torch.randn(1, 3, 128, 160)
    enc = _small_encoder(seed=2).eval()
    with torch.no_grad():
        enc(x)
        other = _small_encoder(seed=3).eval()
        enc.load_state_dict(other.state_dict())
        assert torch.equal(enc(x), other(x))


def test_eval_mode_equals_unfolded_batchnorm_and_keeps_gradients() -> None:
    x = torch.randn(1, 3, 128, 128)
    enc = _small_encoder(seed=4).eval()
    with torch.no_grad():
        folded = enc(x)
    # Training mode runs conv + BatchNorm as two layers; with the BatchNorms themselves in eval
    # mode (running statistics) that must give the folded numbers.
    enc.train()
    for m in enc.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    with torch.no_grad():
        unfolded = enc(x)
    assert (folded - unfolded).abs().max().item() <= 1e-5
    # Fine-tuning in eval mode: gradients reach the BatchNorm and the attention bias table.
    enc.eval()
    enc(x).square().mean().backward()
    assert enc.layers[0].blocks[0].conv1.bn.weight.grad is not None
    assert enc.layers[2].blocks[0].attn.attention_biases.grad is not None
