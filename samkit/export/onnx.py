"""ONNX export with the official signatures, and an onnxruntime backend.

``decoder.onnx`` has the inputs and outputs of the official ``SamOnnxModel`` export
(``segment_anything/utils/onnx.py``), so the official web demo and the labelling tools built on
it load samkit's files as they are:

- inputs ``image_embeddings`` 1 x C x h x w, ``point_coords`` 1 x N x 2 (input frame: pixels of
  the image resized to long side S), ``point_labels`` 1 x N (1/0 object/background, 2/3 box
  corners, -1 padding; N is dynamic), ``mask_input`` 1 x 1 x 4h x 4w, ``has_mask_input`` (1),
  ``orig_im_size`` (2: H, W);
- outputs ``masks`` 1 x K x H x W logits at the original size, ``iou_predictions`` 1 x K,
  ``low_res_masks`` 1 x K x 4h x 4w. K = 4 (all mask tokens, token 0 the single-mask one) or,
  with ``return_single_mask``, 1 chosen as the official export does (token 0 when more than
  2.5 points, else the best by predicted IoU).

HQ-SAM decoders take the official sam-hq signature: ``interm_embeddings`` (1 x B x h x w x C_vit,
the first global block's output) after ``image_embeddings``, one mask out (``hq_token_only``
and ``multimask_output`` fixed at export, as in sam-hq's script).

``encoder.onnx`` takes ``image`` (1 x 3 x S x S, normalised and padded) or, exported with
``preprocess=True``, ``input_image`` (h x w x 3 float RGB 0..255, any size): the graph resizes
the long side to S (PIL's antialiased bilinear, as a matrix product), normalises and pads. HQ
encoders also output ``interm_embeddings``. ``samkit_onnx.json`` records the configuration and
the export options.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from samkit.errors import ConfigError
from samkit.models.sam import PIXEL_MEAN, PIXEL_STD, Sam

DECODER_INPUTS = [
    "image_embeddings",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
]
DECODER_OUTPUTS = ["masks", "iou_predictions", "low_res_masks"]


class DecoderGraph(nn.Module):
    """Trace-friendly prompt encoder + mask decoder + upscaling, as the official SamOnnxModel
    (labels as indicators, no boolean indexing, no control flow on prompts)."""

    def __init__(
        self,
        model: Sam,
        return_single_mask: bool = False,
        hq_token_only: bool = False,
        multimask_output: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.return_single_mask = return_single_mask
        self.hq_token_only = hq_token_only
        self.multimask_output = multimask_output

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pe_enc = self.model.prompt_encoder
        emb = pe_enc.pe_layer.forward_with_coords(coords + 0.5, pe_enc.input_image_size)
        labels = labels.unsqueeze(-1)
        emb = emb * (labels != -1).to(emb.dtype)
        emb = emb + pe_enc.not_a_point_embed.weight * (labels == -1).to(emb.dtype)
        for i in range(pe_enc.num_point_embeddings):
            emb = emb + pe_enc.point_embeddings[i].weight * (labels == i).to(emb.dtype)
        return emb

    def _embed_mask(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        pe_enc = self.model.prompt_encoder
        has = has_mask_input.view(1, 1, 1, 1)
        no_mask = pe_enc.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return has * pe_enc.mask_downscaling(mask_input) + (1 - has) * no_mask

    def _upscale(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        s = self.model.image_size
        masks = F.interpolate(masks, (s, s), mode="bilinear", align_corners=False)
        size = orig_im_size.to(torch.float32)
        input_size = torch.floor(size * (s / torch.max(size)) + 0.5).to(torch.int64)
        # Crop by index_select over a Range: slicing with int() bounds is frozen at the dummy
        # input's size by the tracer (the official export has that flaw with current torch:
        # it crops every image as if it had the aspect ratio of its 1500 x 2250 dummy).
        masks = masks.index_select(2, torch.arange(input_size[0]))
        masks = masks.index_select(3, torch.arange(input_size[1]))
        hw = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(hw[0], hw[1]), mode="bilinear", align_corners=False)

    def _select(
        self, masks: torch.Tensor, iou: torch.Tensor, num_points: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # The official rule without control flow: token 0 for more than 2.5 points, else the
        # best of all tokens by predicted IoU.
        reweight = torch.tensor([[1000] + [0] * (iou.shape[1] - 1)], dtype=iou.dtype)
        best = torch.argmax(iou + (num_points - 2.5) * reweight, dim=1)
        rows = torch.arange(masks.shape[0])
        return masks[rows, best].unsqueeze(1), iou[rows, best].unsqueeze(1)

    def forward(
        self, image_embeddings: torch.Tensor, *rest: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        model = self.model
        if model.is_hq:
            interm, coords, labels, mask_input, has_mask_input, orig_im_size = rest
        else:
            coords, labels, mask_input, has_mask_input, orig_im_size = rest
        sparse = self._embed_points(coords, labels)
        dense = self._embed_mask(mask_input, has_mask_input)
        pe = model.prompt_encoder.get_dense_pe()
        if model.is_hq:
            hq = model.mask_decoder.hq_features(image_embeddings, interm[0])  # type: ignore[operator]
            masks, iou = model.mask_decoder(
                image_embeddings,
                pe,
                sparse,
                dense,
                self.multimask_output,
                hq_features=hq,
                hq_token_only=self.hq_token_only,
            )
        else:
            masks, iou, _ = model.mask_decoder.predict_masks(image_embeddings, pe, sparse, dense)
            if self.return_single_mask:
                masks, iou = self._select(masks, iou, coords.shape[1])
        return self._upscale(masks, orig_im_size), iou, masks


class EncoderGraph(nn.Module):
    """The image encoder; with ``preprocess`` also the resize (long side to S, bilinear),
    normalisation and padding, so clients feed an H x W x 3 RGB image."""

    def __init__(self, model: Sam, preprocess: bool = False) -> None:
        super().__init__()
        self.encoder = model.image_encoder
        self.hq = model.is_hq
        self.preprocess = preprocess
        self.size = model.image_size
        self.register_buffer("mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), False)
        self.register_buffer("std", torch.tensor(PIXEL_STD).view(-1, 1, 1), False)

    def _preprocess(self, image: torch.Tensor) -> torch.Tensor:
        s = self.size
        hw = torch._shape_as_tensor(image)[:2].to(torch.float32)
        new_hw = torch.floor(hw * (s / torch.max(hw)) + 0.5).to(torch.int64)
        rows = _resize_matrix(hw[0], new_hw[0])  # nh x h
        cols = _resize_matrix(hw[1], new_hw[1])  # nw x w
        x = image.to(torch.float32).permute(2, 0, 1)
        x = (rows @ x @ cols.transpose(0, 1)).unsqueeze(0)
        x = (x - self.mean) / self.std
        # A constant pad then a crop: padding amounts that depend on the image size would be
        # frozen by the tracer.
        return F.pad(x, (0, s, 0, s))[..., :s, :s]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self._preprocess(image) if self.preprocess else image
        if not self.hq:
            return (self.encoder(x),)
        emb, interm = self.encoder.forward_with_interm(x)  # type: ignore[operator]
        return emb, interm[0].unsqueeze(0)


def _resize_matrix(n_in: torch.Tensor, n_out: torch.Tensor) -> torch.Tensor:
    """n_out x n_in weights of PIL's bilinear resize (a triangle filter widened by the scale
    when shrinking, so it antialiases), as one matrix product: traceable with dynamic sizes,
    where ONNX export of torch's antialiased interpolate is not."""
    scale = n_in / n_out.to(torch.float32)
    width = torch.clamp(scale, min=1.0)
    centre = (torch.arange(n_out).to(torch.float32) + 0.5) * scale
    src = torch.arange(n_in.to(torch.int64)).to(torch.float32) + 0.5
    w = torch.clamp(1 - torch.abs(src[None, :] - centre[:, None]) / width, min=0)
    return w / w.sum(1, keepdim=True)


def export_decoder(
    model: Sam,
    path: str | os.PathLike,
    return_single_mask: bool = False,
    hq_token_only: bool = False,
    multimask_output: bool = False,
    opset: int = 17,
) -> Path:
    """Write the prompt encoder + mask decoder with the official signature (see the module
    docstring). ``return_single_mask``: SAM only; ``hq_token_only``, ``multimask_output``:
    HQ-SAM only, as in sam-hq's export script."""
    _check_options(model, return_single_mask, hq_token_only or multimask_output)
    model = model.eval().float()
    c = model.prompt_encoder.embed_dim
    grid = model.prompt_encoder.image_embedding_size
    mh, mw = model.prompt_encoder.mask_input_size
    s = model.image_size
    inputs: list[torch.Tensor] = [torch.randn(1, c, *grid)]
    names = list(DECODER_INPUTS)
    if model.is_hq:
        vit_dim = model.mask_decoder.compress_vit_feat[0].in_channels  # type: ignore[index]
        inputs.append(torch.randn(1, 1, *grid, vit_dim))
        names.insert(1, "interm_embeddings")
    inputs += [
        torch.randint(0, s, (1, 5, 2)).float(),
        torch.randint(0, 4, (1, 5)).float(),
        torch.randn(1, 1, mh, mw),
        torch.tensor([1.0]),
        torch.tensor([1500.0, 2250.0]),
    ]
    # eval(): export restores the wrapper's mode afterwards, recursively, and a new module is
    # in training mode; TinyViT's batch norms would be left computing batch statistics.
    graph = DecoderGraph(model, return_single_mask, hq_token_only, multimask_output).eval()
    with torch.no_grad():
        torch.onnx.export(
            graph,
            tuple(inputs),
            str(path),
            input_names=names,
            output_names=DECODER_OUTPUTS,
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return Path(path)


def _check_options(model: Sam, single_mask: bool, hq_options: bool) -> None:
    if model.is_hq and single_mask:
        raise ConfigError(
            "--return-single-mask is for SAM decoders; HQ-SAM's gives one mask already"
        )
    if not model.is_hq and hq_options:
        raise ConfigError(
            "--hq-token-only and --multimask-output are for HQ-SAM decoders; this model is SAM"
        )


def export_encoder(
    model: Sam, path: str | os.PathLike, preprocess: bool = False, opset: int = 17
) -> Path:
    """Write the image encoder (see the module docstring for ``preprocess``)."""
    model = model.eval().float()
    s = model.image_size
    dummy = (
        torch.randint(0, 256, (s * 3 // 4, s, 3)).float() if preprocess else torch.zeros(1, 3, s, s)
    )
    outputs = ["image_embeddings"] + (["interm_embeddings"] if model.is_hq else [])
    with torch.no_grad():
        torch.onnx.export(
            EncoderGraph(model, preprocess).eval(),  # see export_decoder
            (dummy,),
            str(path),
            input_names=["input_image" if preprocess else "image"],
            output_names=outputs,
            dynamic_axes={"input_image": {0: "height", 1: "width"}} if preprocess else None,
            opset_version=opset,
            dynamo=False,
        )
    return Path(path)


def export_onnx(
    model: Sam,
    out_dir: str | os.PathLike,
    opset: int = 17,
    return_single_mask: bool = False,
    preprocess: bool = False,
    hq_token_only: bool = False,
    multimask_output: bool = False,
) -> tuple[Path, Path]:
    """Write encoder.onnx, decoder.onnx and samkit_onnx.json (configuration and options)
    into out_dir; returns the two graph paths."""
    _check_options(model, return_single_mask, hq_token_only or multimask_output)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    enc = export_encoder(model, out / "encoder.onnx", preprocess, opset)
    dec = export_decoder(
        model, out / "decoder.onnx", return_single_mask, hq_token_only, multimask_output, opset
    )
    options = {
        "return_single_mask": return_single_mask,
        "preprocess": preprocess,
        "hq_token_only": hq_token_only,
        "multimask_output": multimask_output,
    }
    meta = {"config": model.config.to_dict(), "options": options}  # type: ignore[union-attr]
    (out / "samkit_onnx.json").write_text(json.dumps(meta))
    return enc, dec


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """An int8 copy of an ONNX graph by onnxruntime's dynamic quantization (weights uint8,
    activations quantized at run time), with the official export script's settings."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # onnxruntime logs every tensor it leaves in float (dumping its type) on the root logger.
    logging.disable(logging.WARNING)
    try:
        quantize_dynamic(
            model_input=str(src),
            model_output=str(dst),
            per_channel=False,
            reduce_range=False,
            weight_type=QuantType.QUInt8,
        )
    finally:
        logging.disable(logging.NOTSET)
    return Path(dst)


class OnnxPredictor:
    """The Predictor API (set_image / predict) on onnxruntime instead of PyTorch.

    Reads a folder from ``export_onnx``. ``int8``: False (the float graphs), True (both
    ``*.int8.onnx`` copies) or "encoder" (the int8 encoder with the float decoder: most of the
    speed-up, masks closer to float)."""

    def __init__(
        self,
        onnx_dir: str | os.PathLike,
        threads: int | None = None,
        int8: bool | Literal["encoder"] = False,
    ) -> None:
        import onnxruntime as ort

        from samkit.models import SamConfig

        d = Path(onnx_dir)
        if int8 not in (False, True, "encoder"):
            raise ConfigError(f"int8 is False, True or 'encoder', not {int8!r}")
        enc_name = "encoder.int8.onnx" if int8 else "encoder.onnx"
        dec_name = "decoder.int8.onnx" if int8 is True else "decoder.onnx"
        for name in (enc_name, dec_name, "samkit_onnx.json"):
            if not (d / name).exists():
                raise ConfigError(
                    f"{d / name} is missing; create the folder with `samkit export-onnx`"
                    + (" --int8" if int8 else "")
                )
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.encoder = ort.InferenceSession(str(d / enc_name), opts)
        self.decoder = ort.InferenceSession(str(d / dec_name), opts)
        meta = json.loads((d / "samkit_onnx.json").read_text())
        if "config" not in meta:
            raise ConfigError(
                f"{d} was exported by an older samkit; run `samkit export-onnx` again"
            )
        cfg = SamConfig.from_dict(meta["config"])
        self.options = meta["options"]
        self.image_size = cfg.image_size
        grid = cfg.image_size // cfg.patch_size
        self.mask_size = (4 * grid, 4 * grid)
        self.embedding: np.ndarray | None = None
        self.interm: np.ndarray | None = None
        self.original_size: tuple[int, int] = (0, 0)

    def set_image(self, image) -> None:  # type: ignore[no-untyped-def]
        from samkit.image_io import load_image
        from samkit.transforms import resize_image

        img = load_image(image)
        # Resized here with PIL as the PyTorch path does; an in-graph resize then keeps the size.
        r = resize_image(img, self.image_size).astype(np.float32)
        if self.options["preprocess"]:
            feed = {"input_image": r}
        else:
            x = (r - np.array(PIXEL_MEAN, np.float32)) / np.array(PIXEL_STD, np.float32)
            x = np.pad(
                x, ((0, self.image_size - r.shape[0]), (0, self.image_size - r.shape[1]), (0, 0))
            )
            feed = {"image": x.transpose(2, 0, 1)[None]}
        out = self.encoder.run(None, feed)
        self.embedding = out[0]
        self.interm = out[1] if len(out) > 1 else None
        self.original_size = img.shape[:2]  # type: ignore[assignment]

    def predict(  # type: ignore[no-untyped-def]
        self, points=None, labels=None, box=None, mask_input=None, multimask: bool = True
    ):
        """As ``Predictor.predict``. Decoders exported with one mask output (single-mask
        export, HQ-SAM) return that mask whatever ``multimask`` says."""
        from samkit.predictor import Prediction, _check_box, _check_mask_input, _check_points
        from samkit.transforms import boxes_to_input, coords_to_input

        if self.embedding is None:
            from samkit.errors import StateError

            raise StateError("no image set: call set_image(image) before predict")
        pts, lbl = _check_points(points, labels, self.original_size)
        bx = _check_box(box, self.original_size)
        coords = np.zeros((0, 2))
        labs = np.zeros((0,))
        if pts is not None:
            coords = coords_to_input(pts, self.original_size, self.image_size)
            labs = lbl.astype(np.float64)  # type: ignore[union-attr]
        if bx is not None:
            corners = boxes_to_input(bx, self.original_size, self.image_size).reshape(2, 2)
            coords = np.concatenate([coords, corners])
            labs = np.concatenate([labs, [2, 3]])
        else:  # the padding point exactly when there is no box, as the PyTorch path
            coords = np.concatenate([coords, [[0.0, 0.0]]])
            labs = np.concatenate([labs, [-1]])
        has = np.array([0.0 if mask_input is None else 1.0], np.float32)
        mi = np.zeros((1, 1, *self.mask_size), np.float32)
        if mask_input is not None:
            mi = _check_mask_input(mask_input, self.mask_size, batch=False)[None]
        feed = {
            "image_embeddings": self.embedding,
            "point_coords": coords[None].astype(np.float32),
            "point_labels": labs[None].astype(np.float32),
            "mask_input": mi.astype(np.float32),
            "has_mask_input": has,
            "orig_im_size": np.array(self.original_size, np.float32),
        }
        if self.interm is not None:
            feed["interm_embeddings"] = self.interm
        up, iou, low = self.decoder.run(None, feed)
        if low.shape[1] == 4:
            sl = slice(1, None) if multimask else slice(0, 1)
            up, iou, low = up[:, sl], iou[:, sl], low[:, sl]
        return Prediction(up[0] > 0, iou[0].astype(np.float32), low[0].astype(np.float32))
