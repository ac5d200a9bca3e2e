"""ONNX export and an onnxruntime backend.

Two graphs, as in the official export plus the encoder the official code never exported:
- ``encoder.onnx``: normalised, padded 1 x 3 x S x S image -> 1 x C x h x w embedding;
- ``decoder.onnx``: embedding + prompts -> low-res logits of all 4 mask tokens and their IoU.
  Prompts are inputs: ``point_coords`` 1 x N x 2 (input frame), ``point_labels`` 1 x N with
  1/0 = object/background, 2/3 = box corners, -1 = padding; ``mask_input`` 1 x 1 x 4h x 4w and
  ``has_mask_input`` (1). ``OnnxPredictor`` builds these exactly as the PyTorch path does (the
  padding point exactly when there is no box), so both give the same masks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from samkit.errors import ConfigError
from samkit.models.sam import Sam


class DecoderGraph(nn.Module):
    """Trace-friendly prompt encoder + mask decoder (labels as indicators, no boolean indexing)."""

    def __init__(self, model: Sam) -> None:
        super().__init__()
        if model.is_hq:
            raise ConfigError("ONNX export of HQ-SAM decoders is not supported yet; use SAM")
        self.model = model

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pe_enc = self.model.prompt_encoder
        coords = point_coords + 0.5
        emb = pe_enc.pe_layer.forward_with_coords(coords, pe_enc.input_image_size)
        labels = point_labels.unsqueeze(-1)
        emb = emb * (labels != -1).to(emb.dtype)
        emb = emb + pe_enc.not_a_point_embed.weight * (labels == -1).to(emb.dtype)
        for i in range(pe_enc.num_point_embeddings):
            emb = emb + pe_enc.point_embeddings[i].weight * (labels == i).to(emb.dtype)
        dense = pe_enc.mask_downscaling(mask_input) * has_mask_input.view(1, 1, 1, 1)
        no_mask = pe_enc.no_mask_embed.weight.reshape(1, -1, 1, 1)
        dense = dense + (1 - has_mask_input.view(1, 1, 1, 1)) * no_mask
        masks, iou, _ = self.model.mask_decoder.predict_masks(
            image_embeddings, pe_enc.get_dense_pe(), emb, dense
        )
        return masks, iou


class EncoderGraph(nn.Module):
    def __init__(self, model: Sam) -> None:
        super().__init__()
        self.encoder = model.image_encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder(image)


def export_onnx(model: Sam, out_dir: str | os.PathLike, opset: int = 17) -> tuple[Path, Path]:
    """Write encoder.onnx, decoder.onnx and samkit_onnx.json (the config) into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.eval().float()
    s = model.image_size
    grid = model.prompt_encoder.image_embedding_size
    c = model.prompt_encoder.embed_dim
    mh, mw = model.prompt_encoder.mask_input_size
    enc_path, dec_path = out / "encoder.onnx", out / "decoder.onnx"
    with torch.no_grad():
        torch.onnx.export(
            EncoderGraph(model),
            (torch.zeros(1, 3, s, s),),
            str(enc_path),
            input_names=["image"],
            output_names=["image_embeddings"],
            opset_version=opset,
            dynamo=False,
        )
        dummy = (
            torch.randn(1, c, *grid),
            torch.randint(0, s, (1, 3, 2)).float(),
            torch.tensor([[1, 0, -1]], dtype=torch.float32),
            torch.zeros(1, 1, mh, mw),
            torch.tensor([1.0]),
        )
        torch.onnx.export(
            DecoderGraph(model),
            dummy,
            str(dec_path),
            input_names=[
                "image_embeddings",
                "point_coords",
                "point_labels",
                "mask_input",
                "has_mask_input",
            ],
            output_names=["low_res_masks", "iou_predictions"],
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
            opset_version=opset,
            dynamo=False,
        )
    (out / "samkit_onnx.json").write_text(json.dumps(model.config.to_dict()))  # type: ignore[union-attr]
    return enc_path, dec_path


class OnnxPredictor:
    """The Predictor API (set_image / predict) on onnxruntime instead of PyTorch."""

    def __init__(self, onnx_dir: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime as ort

        from samkit.models import SamConfig

        d = Path(onnx_dir)
        for name in ("encoder.onnx", "decoder.onnx", "samkit_onnx.json"):
            if not (d / name).exists():
                raise ConfigError(
                    f"{d / name} is missing; create the folder with `samkit export-onnx`"
                )
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.encoder = ort.InferenceSession(str(d / "encoder.onnx"), opts)
        self.decoder = ort.InferenceSession(str(d / "decoder.onnx"), opts)
        cfg = SamConfig.from_dict(json.loads((d / "samkit_onnx.json").read_text()))
        self.image_size = cfg.image_size
        grid = cfg.image_size // cfg.patch_size
        self.mask_size = (4 * grid, 4 * grid)
        self.embedding: np.ndarray | None = None
        self.original_size: tuple[int, int] = (0, 0)
        self.input_size: tuple[int, int] = (0, 0)

    def set_image(self, image) -> None:  # type: ignore[no-untyped-def]
        from samkit.image_io import load_image
        from samkit.models.sam import PIXEL_MEAN, PIXEL_STD
        from samkit.transforms import resize_image

        img = load_image(image)
        r = resize_image(img, self.image_size)
        x = torch.as_tensor(r).permute(2, 0, 1)[None].float()
        mean = torch.tensor(PIXEL_MEAN).view(-1, 1, 1)
        std = torch.tensor(PIXEL_STD).view(-1, 1, 1)
        x = (x - mean) / std
        x = torch.nn.functional.pad(
            x, (0, self.image_size - r.shape[1], 0, self.image_size - r.shape[0])
        )
        (self.embedding,) = self.encoder.run(None, {"image": x.numpy()})
        self.original_size, self.input_size = img.shape[:2], r.shape[:2]  # type: ignore[assignment]

    def predict(  # type: ignore[no-untyped-def]
        self, points=None, labels=None, box=None, mask_input=None, multimask: bool = True
    ):
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
        else:
            coords = np.concatenate([coords, [[-0.5, -0.5]]])  # (0, 0) after the +0.5 shift
            labs = np.concatenate([labs, [-1]])
        has = np.array([0.0 if mask_input is None else 1.0], np.float32)
        mi = np.zeros((1, 1, *self.mask_size), np.float32)
        if mask_input is not None:
            mi = _check_mask_input(mask_input, self.mask_size, batch=False)[None]
        low, iou = self.decoder.run(
            None,
            {
                "image_embeddings": self.embedding,
                "point_coords": coords[None].astype(np.float32),
                "point_labels": labs[None].astype(np.float32),
                "mask_input": mi,
                "has_mask_input": has,
            },
        )
        sl = slice(1, None) if multimask else slice(0, 1)
        low, iou = low[:, sl], iou[:, sl]
        up = _postprocess(low, self.image_size, self.input_size, self.original_size)
        return Prediction(up[0] > 0, iou[0].astype(np.float32), low[0].astype(np.float32))


def _postprocess(
    low: np.ndarray, s: int, input_size: tuple[int, int], original_size: tuple[int, int]
) -> np.ndarray:
    import torch.nn.functional as F

    t = torch.as_tensor(low)
    t = F.interpolate(t, (s, s), mode="bilinear", align_corners=False)
    t = t[..., : input_size[0], : input_size[1]]
    return F.interpolate(t, original_size, mode="bilinear", align_corners=False).numpy()
