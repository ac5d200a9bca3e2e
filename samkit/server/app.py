"""The FastAPI app behind ``samkit serve``: an HTTP API (OpenAPI at /openapi.json, docs at
/docs) and the web page at /. See docs/server.md."""

from __future__ import annotations

import dataclasses
import io
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image

from samkit.errors import LimitError, SamkitError, StateError
from samkit.formats import coco_dataset, mask_record, sa1b_document
from samkit.image_io import max_pixels
from samkit.models.sam import Sam
from samkit.server import schemas as S
from samkit.server.db import Database
from samkit.server.decoding import decoding_routes
from samkit.server.limits import (
    BodyLimit,
    Limits,
    check_everything,
    check_mask_pixels,
    check_points,
)
from samkit.server.projects import ImageUpload, folder_locator, open_folder, project_routes
from samkit.server.state import (
    DEFAULT_CACHE_BYTES,
    References,
    StoreFull,
    UnknownId,
    UnreadableUpload,
    Workspace,
)

STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD = 20 * 2**20


def create_app(
    model: Sam,
    data_dir: str | Path | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    model_name: str = "",
    limits: Limits | None = None,
    folder: str | Path | None = None,
) -> FastAPI:
    """The app for one model. Uploaded images and the labelling database (``server.db``) are
    kept under ``data_dir`` (a temporary folder if None); ``folder``, if given, is a read-only
    folder of images served as a project (nothing is written into it); embeddings live in an
    LRU of at most ``cache_bytes``; request bodies over ``max_upload_bytes`` get 413 before
    they are read; ``limits`` bound what one request may ask (``server.limits.Limits``)."""
    if data_dir is None:
        data_dir = tempfile.mkdtemp(prefix="samkit-serve-")
    limits = limits or Limits()
    ws = Workspace(model, Path(data_dir), cache_bytes, limits)
    db = Database(Path(data_dir) / "samkit.sqlite")
    ws.locate = folder_locator(db)
    if folder is not None:
        open_folder(db, Path(folder), model.image_size)
    refs = References()
    app = FastAPI(
        title="samkit",
        summary="Interactive segmentation with Segment Anything: prompts, everything mode, "
        "personalization (PerSAM), export.",
    )
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)
    app.state.workspace = ws
    app.state.db = db
    _errors(app)
    app.include_router(project_routes(ws, db, model, limits))
    app.include_router(decoding_routes(ws, model))

    # async: answered on the event loop, never queued behind work in the thread pool
    @app.get("/api/health", tags=["server"])
    async def health() -> dict[str, Any]:
        """Liveness and what the server holds: model, images, embedding cache, limits."""
        return {
            "status": "ok",
            "model": model_name,
            "image_size": model.image_size,
            "hq": model.is_hq,
            "images": len(ws.image_ids()),
            "cache": ws.cache.stats(),
            "store_bytes": ws.store_bytes,
            "max_upload_bytes": max_upload_bytes,
            "limits": {**dataclasses.asdict(limits), "max_pixels": max_pixels()},
        }

    # -- images -----------------------------------------------------------------------------

    @app.post("/api/images", status_code=201, response_model=S.ImageOut, tags=["images"])
    def upload(file: Annotated[UploadFile, File(description="an image file")]) -> S.ImageOut:
        """Upload an image (multipart form field ``file``); it is embedded once, now, and kept
        only if that works."""
        try:
            image_id, entry, secs = ws.add_image(file.file.read())
        except UnreadableUpload as e:
            raise _Http(
                415, f"{file.filename or 'the upload'} is not a readable image: {e}"
            ) from None
        h, w = entry.image.shape[:2]
        return S.ImageOut(id=image_id, width=w, height=h, embed_ms=secs * 1e3)

    @app.get("/api/images", tags=["images"])
    def list_images() -> dict[str, list[str]]:
        """Ids of the uploaded images."""
        return {"images": ws.image_ids()}

    @app.get("/api/images/{image_id}", response_model=S.ImageOut, tags=["images"])
    def image_info(image_id: str) -> S.ImageOut:
        h, w = ws.entry(image_id).image.shape[:2]
        return S.ImageOut(id=image_id, width=w, height=h)

    @app.get("/api/images/{image_id}/image.png", tags=["images"])
    def image_png(image_id: str) -> Response:
        """The image as the model sees it (decoded, EXIF-rotated RGB), as a PNG."""
        buf = io.BytesIO()
        Image.fromarray(ws.entry(image_id).image).save(buf, format="PNG", compress_level=1)
        return Response(buf.getvalue(), media_type="image/png")

    @app.delete("/api/images/{image_id}", status_code=204, tags=["images"])
    def delete_image(image_id: str) -> Response:
        ws.delete_image(image_id)
        db.delete_image(image_id)
        return Response(status_code=204)

    # -- prompts ----------------------------------------------------------------------------

    @app.post(
        "/api/images/{image_id}/predict",
        response_model=S.PredictOut,
        response_model_exclude_none=True,
        tags=["segment"],
    )
    def predict(image_id: str, prompt: S.Prompt) -> S.PredictOut:
        """Segment one object from points, a box and/or a rough mask. Returns the candidates
        (three with ``multimask``) with their predicted IoU, as PNG and/or COCO RLE."""
        if not prompt.points and prompt.box is None and prompt.mask is None:
            raise _Http(422, "give at least one point, a box or a mask")
        check_points(len(prompt.points), limits)  # before any work, the embedding included
        entry = ws.entry(image_id)
        h, w = entry.image.shape[:2]
        mask_input = None
        if prompt.mask is not None:
            m = S.mask_in(prompt.mask, (h, w))
            mask_input = mask_logits(m, entry.embedding.input_size, model.image_size)
        t0 = time.perf_counter()
        res = ws.predict(
            image_id,
            points=np.array(prompt.points, dtype=np.float64) if prompt.points else None,
            labels=np.array(prompt.labels, dtype=np.int64) if prompt.points else None,
            box=prompt.box,
            mask_input=mask_input,
            multimask=prompt.multimask,
        )
        ms = (time.perf_counter() - t0) * 1e3
        masks = [S.mask_out(m, s, prompt.format) for m, s in zip(res.masks, res.scores)]
        best = int(np.argmax(res.scores))
        return S.PredictOut(width=w, height=h, best=best, masks=masks, decode_ms=ms)

    @app.post("/api/images/{image_id}/everything", tags=["segment"])
    def everything(image_id: str, opts: S.EverythingIn | None = None) -> dict[str, Any]:
        """Segment everything (automatic mask generation); masks as COCO RLE, largest first."""
        from samkit.automatic import MaskGenerator

        gen = MaskGenerator(
            model, output_mode="coco_rle", **(opts or S.EverythingIn()).model_dump()
        )
        masks_per_point = model.mask_decoder.num_multimask_outputs
        check_everything(gen, ws.size(image_id), masks_per_point, limits)
        entry = ws.entry(image_id)
        image = entry.image
        # The cached embedding saves a second encode; a fresh per-image cache, since prompts on
        # the same image fill theirs meanwhile (the decoder's caches are not thread-safe).
        emb = dataclasses.replace(
            entry.embedding, features=dataclasses.replace(entry.embedding.features, cache={})
        )
        t0 = time.perf_counter()
        with ws.heavy:
            anns = gen.generate(image, embedding=emb)
        anns.sort(key=lambda a: -a["area"])
        keep = ("segmentation", "area", "bbox", "predicted_iou", "stability_score")
        return {
            "width": image.shape[1],
            "height": image.shape[0],
            "annotations": [{k: _plain(a[k]) for k in keep} for a in anns],
            "ms": (time.perf_counter() - t0) * 1e3,
        }

    # -- personalization --------------------------------------------------------------------

    @app.post("/api/references", status_code=201, tags=["personalize"])
    def add_reference(body: S.ReferenceIn) -> dict[str, str]:
        """Learn a personal object (PerSAM, training-free) from an uploaded image and its mask;
        apply it to other images with ``/api/references/{id}/apply``."""
        from samkit.persam.persam import PerSAM

        mask = S.mask_in(body.mask, ws.size(body.image_id))
        image = ws.entry(body.image_id).image
        with ws.heavy:
            per = PerSAM(model).fit(image, mask)
        return {"id": refs.add(per)}

    @app.post(
        "/api/references/{ref_id}/apply",
        response_model=S.ApplyOut,
        response_model_exclude_none=True,
        tags=["personalize"],
    )
    def apply_reference(ref_id: str, body: S.ApplyIn) -> S.ApplyOut:
        """Find the reference's object in an uploaded image."""
        per = refs.get(ref_id)
        image = ws.entry(body.image_id).image
        with ws.heavy:
            out = per.segment(image)
        return S.ApplyOut(
            mask=S.mask_out(out.mask, out.score, body.format),
            points=[(float(x), float(y)) for x, y in out.points],
            labels=[int(v) for v in out.labels],
        )

    @app.delete("/api/references/{ref_id}", status_code=204, tags=["personalize"])
    def delete_reference(ref_id: str) -> Response:
        refs.delete(ref_id)
        return Response(status_code=204)

    # -- export -----------------------------------------------------------------------------

    @app.post("/api/export/coco", tags=["export"])
    def export_coco(body: S.ExportIn) -> JSONResponse:
        """Masks of one or more images as a COCO instances file (RLE segmentations)."""
        return JSONResponse(
            coco_file(ws, body, limits),
            headers={"content-disposition": 'attachment; filename="masks.coco.json"'},
        )

    @app.post("/api/export/png", tags=["export"])
    def export_png(body: S.ReferenceIn) -> Response:
        """One mask of an uploaded image as an 8-bit PNG (255 = object)."""
        mask = S.mask_in(body.mask, ws.size(body.image_id))
        return Response(
            S.png_bytes(mask),
            media_type="image/png",
            headers={"content-disposition": 'attachment; filename="mask.png"'},
        )

    # -- the web page -----------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def mask_logits(mask: np.ndarray, input_size: tuple[int, int], image_size: int) -> np.ndarray:
    """A bool H x W mask -> 1 x S/4 x S/4 low-res logits (+-20) in the model's padded input
    frame, the form ``Predictor.predict(mask_input=...)`` takes."""
    h, w = input_size
    pic = Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), Image.BILINEAR)
    frame = np.zeros((image_size, image_size), np.float32)
    frame[:h, :w] = np.asarray(pic, np.float32) / 255
    low = Image.fromarray(frame).resize((image_size // 4,) * 2, Image.BILINEAR)
    return ((np.asarray(low, np.float32) - 0.5) * 40)[None]


def coco_file(ws: Workspace, body: S.ExportIn, limits: Limits) -> dict[str, Any]:
    """COCO instances dict through ``samkit.formats``: one image record per item (its server id
    as file name), one annotation per mask, ``score`` the item's score for that mask if given.
    The masks' total size is checked against the limits before any is decoded."""
    sizes = [ws.size(item.image_id) for item in body.items]
    total = sum(len(item.masks) * h * w for item, (h, w) in zip(body.items, sizes))
    check_mask_pixels(sum(len(item.masks) for item in body.items), total, limits)
    docs = []
    for item, (h, w) in zip(body.items, sizes):
        anns = []
        for k, m in enumerate(item.masks):
            score = item.scores[k] if item.scores is not None and k < len(item.scores) else None
            rec = mask_record(S.mask_in(m, (h, w)), 1.0 if score is None else score)
            if score is None:
                del rec["predicted_iou"]
            anns.append(rec)
        docs.append(sa1b_document(anns, item.image_id, w, h))
    data = coco_dataset(docs, description="samkit serve")
    for a in data["annotations"]:
        if a["score"] is None:
            del a["score"]
    return data


def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


class _Http(Exception):
    def __init__(self, status: int, detail: str) -> None:
        self.status, self.detail = status, detail


def _errors(app: FastAPI) -> None:
    """Our exceptions become JSON ``{"detail": message}`` with a fitting status."""

    def reply(status: int) -> Any:
        async def handler(request: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(exc).strip("'\"")}, status_code=status)

        return handler

    async def http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, _Http)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        # One line naming each bad field, never the input itself: it may be huge, or NaN,
        # which JSON cannot carry.
        assert isinstance(exc, RequestValidationError)
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ())[1:]) or "body"
            parts.append(f"{where}: {err.get('msg', 'invalid')}")
        more = len(exc.errors()) - len(parts)
        detail = "invalid request: " + "; ".join(parts) + (f"; and {more} more" if more else "")
        return JSONResponse({"detail": detail}, status_code=422)

    app.add_exception_handler(_Http, http)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(ImageUpload, reply(415))
    app.add_exception_handler(UnknownId, reply(404))
    app.add_exception_handler(StateError, reply(409))
    app.add_exception_handler(StoreFull, reply(507))
    app.add_exception_handler(LimitError, reply(413))
    app.add_exception_handler(SamkitError, reply(422))


def serve(
    model_name: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    data_dir: str | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
    limits: Limits | None = None,
    model: Sam | None = None,
    folder: str | None = None,
) -> None:
    """Run the app with uvicorn until interrupted, on ``model`` (else ``model_name`` loaded
    on the default device)."""
    import uvicorn

    import samkit

    if model is None:
        model = samkit.load(model_name)
    app = create_app(model, data_dir, cache_bytes, max_upload_bytes, model_name, limits, folder)
    uvicorn.run(app, host=host, port=port, log_level="info")
