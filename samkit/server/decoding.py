"""What the web page needs to decode prompts in the browser, as the official demo does: the
prompt decoder as ONNX (``samkit.export.onnx``, the official ``SamOnnxModel`` signature) and
each image's embedding as compact binary. The server then only computes embeddings; clicks,
boxes and hover previews are decoded by onnxruntime-web (vendored by
``scripts/vendor_ort_web.sh``)."""

from __future__ import annotations

import copy
import tempfile
import threading
from pathlib import Path
from typing import Annotated, Literal

import torch
from fastapi import APIRouter, Query
from fastapi.responses import Response

from samkit.errors import StateError
from samkit.models.sam import Sam
from samkit.server.state import Workspace


class DecoderGraphCache:
    """The decoder ONNX bytes, exported once (on first request) from a float32 CPU copy of the
    decoder side of the model: the served model keeps its device and precision."""

    def __init__(self, model: Sam) -> None:
        self.model = model
        self._bytes: bytes | None = None
        self._lock = threading.Lock()

    def get(self) -> bytes:
        if self.model.is_hq:
            raise StateError(
                "browser decoding takes SAM decoders; this server runs an HQ-SAM model, whose "
                "decoder also needs the encoder's early features: decode with "
                "POST /api/images/{id}/predict"
            )
        with self._lock:
            if self._bytes is None:
                from samkit.export.onnx import export_decoder

                # The encoder is left out of the copy (deepcopy's memo maps it to a stub that
                # only knows the input size).
                stub = torch.nn.Module()
                stub.img_size = self.model.image_size
                shell = copy.deepcopy(self.model, {id(self.model.image_encoder): stub})
                shell = shell.cpu().float().eval()
                with tempfile.TemporaryDirectory() as tmp:
                    path = export_decoder(shell, Path(tmp) / "decoder.onnx")
                    self._bytes = path.read_bytes()
            return self._bytes


def decoding_routes(ws: Workspace, model: Sam) -> APIRouter:
    r = APIRouter(tags=["browser decoding"])
    graph = DecoderGraphCache(model)

    @r.get("/api/decoder.onnx")
    def decoder_onnx() -> Response:
        """The prompt encoder + mask decoder as ONNX with the official signature: inputs
        image_embeddings, point_coords, point_labels, mask_input, has_mask_input,
        orig_im_size; outputs masks (logits at the original size, 4 tokens), iou_predictions,
        low_res_masks."""
        return Response(
            graph.get(),
            media_type="application/octet-stream",
            headers={"cache-control": "private, max-age=3600"},
        )

    @r.get("/api/images/{image_id}/embedding.bin")
    def embedding(
        image_id: str,
        dtype: Annotated[Literal["float16", "float32"], Query()] = "float16",
    ) -> Response:
        """The image's embedding (1 x C x h x w, little-endian ``dtype``, float16 by default:
        half the bytes; float32 gives the server's exact numbers). Headers: ``x-shape``
        "1,C,h,w", ``x-input-size`` "h',w'" (the image resized to the model's long side),
        ``x-original-size`` "H,W"."""
        entry = ws.entry(image_id)
        emb = entry.embedding
        t = emb.features.embeddings.detach().to("cpu", torch.float32).contiguous()
        arr = t.numpy().astype("<f2" if dtype == "float16" else "<f4")
        return Response(
            arr.tobytes(),
            media_type="application/octet-stream",
            headers={
                "x-shape": ",".join(str(v) for v in arr.shape),
                "x-input-size": ",".join(str(v) for v in emb.input_size),
                "x-original-size": ",".join(str(v) for v in entry.image.shape[:2]),
                "x-dtype": dtype,
                "cache-control": "private, max-age=3600",
            },
        )

    return r
