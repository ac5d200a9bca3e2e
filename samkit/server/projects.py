"""Labelling sessions over HTTP: projects of many images (uploads, or a read-only folder given
to ``samkit serve --folder``), accepted objects with category labels, progress, export, and
"find this object in every image" (PerSAM). Everything is kept in ``server.db``."""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.responses import Response

from samkit.errors import ImageError, LimitError, SamkitError
from samkit.formats import mask_record
from samkit.image_io import IMAGE_SUFFIXES, check_aspect_ratio, read_size
from samkit.server import schemas as S
from samkit.server.db import Database, ImageRow
from samkit.server.limits import Limits, check_find_images
from samkit.server.project_export import EXPORT_FORMATS, export_project
from samkit.server.state import UnknownId, UnreadableUpload, Workspace

MAX_OBJECTS_PER_IMAGE = 10_000
MAX_FOLDER_IMAGES = 100_000


def open_folder(db: Database, root: Path, long_side: int) -> str:
    """The project of a read-only image folder (created on first use); files added to the folder
    since are registered now. Only regular files inside ``root`` (after resolving links) with an
    image suffix are taken; files the model cannot take are skipped with a note on stderr.
    Nothing is ever written into the folder."""
    root = root.resolve()
    if not root.is_dir():
        raise ImageError(f"--folder {root} is not a folder; give a folder of images")
    pid = db.project_by_folder(str(root)) or db.add_project(root.name or "images", [], str(root))
    known = db.image_sources(pid)
    found = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if len(found) > MAX_FOLDER_IMAGES:
        raise LimitError(
            f"--folder {root} holds {len(found)} images; samkit serve takes at most "
            f"{MAX_FOLDER_IMAGES} per folder: serve sub-folders one at a time"
        )
    for path in found:
        rel = path.relative_to(root).as_posix()
        if rel in known or not path.resolve().is_relative_to(root):
            continue
        try:
            size = read_size(path)
            check_aspect_ratio(size, long_side)
        except SamkitError as e:
            print(f"samkit serve: skipping {rel}: {e}", file=sys.stderr)
            continue
        db.add_image(pid, rel, size, source=rel)
    return pid


def folder_locator(db: Database) -> Any:
    """``Workspace.locate`` for images of folder projects: id -> the file, or None."""
    roots: dict[str, Path] = {}

    def locate(image_id: str) -> Path | None:
        row = db.image(image_id)
        if row is None or row.source is None:
            return None
        if row.project_id not in roots:
            folder = db.project_folder(row.project_id)
            if folder is None:
                return None
            roots[row.project_id] = Path(folder)
        root = roots[row.project_id]
        path = (root / row.source).resolve()
        return path if path.is_relative_to(root) else None

    return locate


def project_routes(ws: Workspace, db: Database, model: Any, limits: Limits) -> APIRouter:
    r = APIRouter(tags=["projects"])

    def row(image_id: str) -> ImageRow:
        found = db.image(image_id)
        if found is None:
            raise UnknownId(
                f"image '{image_id}' is in no project; upload it with "
                "POST /api/projects/{id}/images"
            )
        return found

    def image_out(im: ImageRow, counts: dict[str, int]) -> dict[str, Any]:
        return {
            "id": im.id,
            "name": im.name,
            "width": im.width,
            "height": im.height,
            "done": im.done,
            "objects": counts.get(im.id, 0),
        }

    @r.get("/api/projects")
    def list_projects() -> dict[str, list[dict[str, Any]]]:
        """Every project with its number of images and of images marked done."""
        return {"projects": db.projects()}

    @r.post("/api/projects", status_code=201)
    def add_project(body: S.ProjectIn) -> dict[str, Any]:
        return db.project(db.add_project(body.name, _categories(body.categories)))

    @r.get("/api/projects/{pid}")
    def project(pid: str) -> dict[str, Any]:
        """The project, its categories and its images in order, each with its object count
        and whether it is done."""
        info = db.project(pid)
        counts = db.object_counts(pid)
        return {**info, "images": [image_out(im, counts) for im in db.images(pid)]}

    @r.patch("/api/projects/{pid}")
    def update_project(pid: str, body: S.ProjectPatch) -> dict[str, Any]:
        cats = None if body.categories is None else _categories(body.categories)
        db.update_project(pid, body.name, cats)
        return db.project(pid)

    @r.delete("/api/projects/{pid}", status_code=204)
    def delete_project(pid: str) -> Response:
        """Forget a project with its objects; its uploads are deleted, a folder is untouched."""
        db.project(pid)
        for im in db.delete_project(pid):
            try:
                ws.delete_image(im.id)
            except UnknownId:
                pass
        return Response(status_code=204)

    @r.post("/api/projects/{pid}/images", status_code=201)
    def add_image(
        pid: str, file: Annotated[UploadFile, File(description="an image file")]
    ) -> dict[str, Any]:
        """Upload an image into a project: embedded once, now, and kept only if that works."""
        db.project(pid)
        name = _file_name(file.filename)
        try:
            image_id, entry, secs = ws.add_image(file.file.read())
        except UnreadableUpload as e:
            raise ImageUpload(f"{name} is not a readable image: {e}") from None
        h, w = entry.image.shape[:2]
        try:
            db.add_image(pid, name, (h, w), image_id=image_id)
        except BaseException:
            ws.delete_image(image_id)
            raise
        out = image_out(row(image_id), {})
        return {**out, "embed_ms": secs * 1e3}

    @r.patch("/api/images/{image_id}/progress")
    def set_done(image_id: str, body: S.ImagePatch) -> dict[str, Any]:
        """Mark an image of a project as done (fully labelled) or not."""
        im = row(image_id)
        db.set_done(im.id, body.done)
        return image_out(row(image_id), {im.id: db.count_objects(im.id)})

    # -- objects ----------------------------------------------------------------------------

    @r.get("/api/images/{image_id}/objects")
    def objects(image_id: str) -> dict[str, Any]:
        """The accepted objects of an image, oldest first (masks as COCO RLE)."""
        return {"objects": db.objects(row(image_id).id)}

    @r.post("/api/images/{image_id}/objects", status_code=201)
    def add_object(image_id: str, body: S.ObjectIn) -> dict[str, Any]:
        """Accept an object: its category and mask are stored, and survive restarts."""
        im = row(image_id)
        if db.count_objects(im.id) >= MAX_OBJECTS_PER_IMAGE:
            raise LimitError(
                f"image '{im.name}' already has {MAX_OBJECTS_PER_IMAGE} objects, the most one "
                "image may hold; delete some first"
            )
        rec = mask_record(_nonempty(S.mask_in(body.mask, (im.height, im.width))), body.score or 0)
        oid = db.add_object(
            im.id, body.category, rec["segmentation"], body.score, rec["area"], rec["bbox"]
        )
        return db.object(oid)

    @r.patch("/api/objects/{oid}")
    def update_object(oid: str, body: S.ObjectPatch) -> dict[str, Any]:
        """Change an accepted object's category, mask and/or score."""
        obj = db.object(oid)
        fields: dict[str, Any] = {}
        if body.category is not None:
            fields["category"] = body.category
        if body.mask is not None:
            im = row(obj["image_id"])
            rec = mask_record(_nonempty(S.mask_in(body.mask, (im.height, im.width))), 0.0)
            fields.update(rle=rec["segmentation"], area=rec["area"], bbox=rec["bbox"])
        if "score" in body.model_fields_set:
            fields["score"] = body.score
        db.update_object(oid, **fields)
        return db.object(oid)

    @r.delete("/api/objects/{oid}", status_code=204)
    def delete_object(oid: str) -> Response:
        db.delete_object(oid)
        return Response(status_code=204)

    # -- export and PerSAM ------------------------------------------------------------------

    @r.get("/api/projects/{pid}/export")
    def export(
        pid: str, format: Annotated[str, Query(pattern="^(" + "|".join(EXPORT_FORMATS) + ")$")]
    ) -> Response:
        """The project's accepted objects as ``coco`` (RLE), ``coco-polygons``, ``yolo``
        (segmentation labels, zip) or ``png`` (one instance label map per image, zip)."""
        info = db.project(pid)
        images = db.images(pid)
        data, media, name = export_project(info, images, db.objects, format)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", info["name"])[:60] or "project"
        return Response(
            data,
            media_type=media,
            headers={"content-disposition": f'attachment; filename="{stem}{name}"'},
        )

    @r.post("/api/projects/{pid}/find")
    def find(pid: str, body: S.FindIn) -> dict[str, Any]:
        """Find the reference object (an image of the project and its mask) in the project's
        other images, or in ``image_ids``, with PerSAM (training-free, without the official
        code's quirks: docs/persam.md). At most one proposal per image (none where the mask
        is empty), COCO RLE, to accept (POST .../objects) or reject in the page."""
        from samkit.persam.persam import PerSAM

        db.project(pid)
        ref = row(body.image_id)
        if ref.project_id != pid:
            raise UnknownId(f"image '{ref.id}' is not in project '{pid}'")
        members = {im.id: im for im in db.images(pid)}
        targets = body.image_ids if body.image_ids is not None else list(members)
        targets = [t for t in dict.fromkeys(targets) if t != ref.id]
        for t in targets:
            if t not in members:
                raise UnknownId(f"image '{t[:40]}' is not in project '{pid}'")
        check_find_images(len(targets), limits)
        mask = S.mask_in(body.mask, (ref.height, ref.width))
        if not mask.any():
            raise ImageError("the reference mask is empty; segment the object first")
        # faithful=False: the official pooling drops masks under about one 16 x 16 patch
        per = PerSAM(model, faithful=False)
        proposals = []
        with ws.heavy:
            per.fit(ws.entry(ref.id).image, mask)
            for t in targets:
                emb = ws.entry(t).embedding
                # a fresh decoder cache: prompts on the same image fill theirs meanwhile
                emb = dataclasses.replace(emb, features=dataclasses.replace(emb.features, cache={}))
                out = per.segment_embedding(emb)
                if not out.mask.any():
                    continue  # nothing found: nothing to accept
                rec = mask_record(out.mask, out.score)
                proposals.append(
                    {"image_id": t, "rle": rec["segmentation"], "score": float(out.score),
                     "area": rec["area"]}
                )  # fmt: skip
        return {"searched": len(targets), "proposals": proposals}

    return r


class ImageUpload(ImageError):
    """An upload into a project that is not an image (415)."""


def _nonempty(mask: Any) -> Any:
    if not mask.any():
        raise ImageError("the object's mask is empty; segment the object before accepting it")
    return mask


def _file_name(name: str | None) -> str:
    """A display name from the client's file name: its last part, printable, at most 200
    characters. Never used as a path."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(c for c in base if c.isprintable()).strip()
    return base[:200] or "image"


def _categories(cats: list[str]) -> list[str]:
    out = list(dict.fromkeys(c.strip() for c in cats if c.strip()))
    if any(len(c) > 100 for c in out):
        raise SamkitError("category names are at most 100 characters")
    return out
