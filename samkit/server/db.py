"""The server's labelling database: projects, their images and the objects annotated on them,
in one SQLite file (``DATA_DIR/samkit.sqlite``, WAL, every write committed before it is
answered, so a server killed with SIGKILL loses nothing it has acknowledged).

An object is a category label, a mask as COCO RLE (the SA-1B encoding) and a score. What a user
has not accepted yet lives in their browser only: nothing here is per user, so users working at
once see each other's accepted objects and never each other's drafts.

Images are either uploads (their bytes under ``DATA_DIR/images/<id>``, ``source`` NULL) or files
of a project's read-only ``folder`` (``source`` = the path relative to that folder, found by the
server itself at start-up, never sent by a client)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from samkit.server.state import UnknownId, check_id, new_id

SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    categories TEXT NOT NULL DEFAULT '[]',
    folder TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    source TEXT,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    position INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS images_by_project ON images(project_id, position);
CREATE TABLE IF NOT EXISTS objects (
    id TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    category TEXT NOT NULL,
    rle TEXT NOT NULL,
    score REAL,
    area INTEGER NOT NULL,
    bbox TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS objects_by_image ON objects(image_id, created);
"""


@dataclass
class ImageRow:
    id: str
    project_id: str
    name: str
    source: str | None
    width: int
    height: int
    done: bool
    position: int


class Database:
    """One SQLite connection shared by the server's threads behind a lock; every method is one
    transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(SCHEMA)

    def _run(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _write(self, *statements: tuple[str, tuple]) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    self._conn.execute(sql, args)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    # -- projects ---------------------------------------------------------------------------

    def add_project(self, name: str, categories: list[str], folder: str | None = None) -> str:
        pid = new_id()
        self._write(
            (
                "INSERT INTO projects (id, name, categories, folder, created) VALUES (?,?,?,?,?)",
                (pid, name, json.dumps(categories), folder, time.time()),
            )
        )
        return pid

    def projects(self) -> list[dict[str, Any]]:
        rows = self._run(
            "SELECT p.*, (SELECT COUNT(*) FROM images i WHERE i.project_id = p.id) AS n_images,"
            " (SELECT COUNT(*) FROM images i WHERE i.project_id = p.id AND i.done) AS n_done"
            " FROM projects p ORDER BY p.created"
        )
        return [_project(r) for r in rows]

    def project(self, pid: str) -> dict[str, Any]:
        rows = self._run(
            "SELECT p.*, (SELECT COUNT(*) FROM images i WHERE i.project_id = p.id) AS n_images,"
            " (SELECT COUNT(*) FROM images i WHERE i.project_id = p.id AND i.done) AS n_done"
            " FROM projects p WHERE p.id = ?",
            (check_id("project", pid),),
        )
        if not rows:
            raise UnknownId(f"no project with id '{pid}'; create it (POST /api/projects)")
        return _project(rows[0])

    def project_by_folder(self, folder: str) -> str | None:
        rows = self._run("SELECT id FROM projects WHERE folder = ?", (folder,))
        return rows[0]["id"] if rows else None

    def project_folder(self, pid: str) -> str | None:
        rows = self._run("SELECT folder FROM projects WHERE id = ?", (pid,))
        return rows[0]["folder"] if rows else None

    def update_project(
        self, pid: str, name: str | None = None, categories: list[str] | None = None
    ) -> None:
        self.project(pid)
        if name is not None:
            self._write(("UPDATE projects SET name = ? WHERE id = ?", (name, pid)))
        if categories is not None:
            self._write(
                ("UPDATE projects SET categories = ? WHERE id = ?", (json.dumps(categories), pid))
            )

    def delete_project(self, pid: str) -> list[ImageRow]:
        """Forget a project, its images and objects; returns its images (uploads to delete)."""
        images = self.images(pid)
        self._write(("DELETE FROM projects WHERE id = ?", (pid,)))
        return images

    # -- images -----------------------------------------------------------------------------

    def add_image(
        self,
        pid: str,
        name: str,
        size: tuple[int, int],
        source: str | None = None,
        image_id: str | None = None,
    ) -> str:
        """Register an image (H, W ``size``) at the end of a project."""
        image_id = image_id or new_id()
        h, w = size
        self._write(
            (
                "INSERT INTO images (id, project_id, name, source, width, height, position)"
                " VALUES (?,?,?,?,?,?, (SELECT COALESCE(MAX(position), -1) + 1 FROM images"
                " WHERE project_id = ?))",
                (image_id, pid, name, source, w, h, pid),
            )
        )
        return image_id

    def images(self, pid: str) -> list[ImageRow]:
        rows = self._run(
            "SELECT * FROM images WHERE project_id = ? ORDER BY position",
            (check_id("project", pid),),
        )
        return [_image(r) for r in rows]

    def image(self, image_id: str) -> ImageRow | None:
        rows = self._run("SELECT * FROM images WHERE id = ?", (check_id("image", image_id),))
        return _image(rows[0]) if rows else None

    def image_sources(self, pid: str) -> set[str]:
        rows = self._run("SELECT source FROM images WHERE project_id = ?", (pid,))
        return {r["source"] for r in rows if r["source"] is not None}

    def set_done(self, image_id: str, done: bool) -> None:
        self._write(("UPDATE images SET done = ? WHERE id = ?", (int(done), image_id)))

    def delete_image(self, image_id: str) -> None:
        self._write(("DELETE FROM images WHERE id = ?", (image_id,)))

    def object_counts(self, pid: str) -> dict[str, int]:
        rows = self._run(
            "SELECT o.image_id, COUNT(*) AS n FROM objects o JOIN images i ON i.id = o.image_id"
            " WHERE i.project_id = ? GROUP BY o.image_id",
            (pid,),
        )
        return {r["image_id"]: r["n"] for r in rows}

    # -- objects ----------------------------------------------------------------------------

    def add_object(
        self, image_id: str, category: str, rle: dict, score: float | None, area: int, bbox: list
    ) -> str:
        oid = new_id()
        now = time.time()
        self._write(
            (
                "INSERT INTO objects (id, image_id, category, rle, score, area, bbox, created,"
                " updated) VALUES (?,?,?,?,?,?,?,?,?)",
                (oid, image_id, category, json.dumps(rle), score, area, json.dumps(bbox), now, now),
            )
        )
        return oid

    def objects(self, image_id: str) -> list[dict[str, Any]]:
        rows = self._run(
            "SELECT * FROM objects WHERE image_id = ? ORDER BY created, id", (image_id,)
        )
        return [_object(r) for r in rows]

    def count_objects(self, image_id: str) -> int:
        return int(self._run("SELECT COUNT(*) FROM objects WHERE image_id = ?", (image_id,))[0][0])

    def object(self, oid: str) -> dict[str, Any]:
        rows = self._run("SELECT * FROM objects WHERE id = ?", (check_id("object", oid),))
        if not rows:
            raise UnknownId(f"no object with id '{oid}'")
        return _object(rows[0])

    def update_object(self, oid: str, **fields: Any) -> None:
        """Set any of category, rle, score, area, bbox of an object."""
        self.object(oid)
        sets, args = [], []
        for k, v in fields.items():
            sets.append(f"{k} = ?")
            args.append(json.dumps(v) if k in ("rle", "bbox") else v)
        sets.append("updated = ?")
        args.append(time.time())
        self._write((f"UPDATE objects SET {', '.join(sets)} WHERE id = ?", (*args, oid)))

    def delete_object(self, oid: str) -> None:
        self.object(oid)
        self._write(("DELETE FROM objects WHERE id = ?", (oid,)))


def _project(r: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": r["id"],
        "name": r["name"],
        "categories": json.loads(r["categories"]),
        "folder": r["folder"] is not None,
        "images": r["n_images"],
        "done": r["n_done"],
    }


def _image(r: sqlite3.Row) -> ImageRow:
    return ImageRow(
        r["id"], r["project_id"], r["name"], r["source"], r["width"], r["height"],
        bool(r["done"]), r["position"],
    )  # fmt: skip


def _object(r: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": r["id"],
        "image_id": r["image_id"],
        "category": r["category"],
        "rle": json.loads(r["rle"]),
        "score": r["score"],
        "area": r["area"],
        "bbox": json.loads(r["bbox"]),
    }
