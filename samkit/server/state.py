"""Server state: uploaded images on disk (a bounded store), their embeddings in a byte-bounded
LRU, and the one model. Ids are server-generated hex tokens, checked against ``ID_RE`` before
any path is built from them, so no client-supplied string ever names a file.

Locks: ``lock`` guards the shared predictor and is held for one bounded unit of work at a time
(one encoder pass, one prompt of at most ``Limits.max_points`` points). Long jobs (everything
mode, PerSAM) use their own predictors and take ``heavy`` instead: one at a time, their size
checked against the limits first, and prompts keep being answered meanwhile. ``decode_slots``
bounds how many uploads are decoded and embedded at once (each holds a full-size image)."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samkit.errors import ImageError, LimitError, SamkitError
from samkit.image_io import check_aspect_ratio, load_image, read_size
from samkit.models.sam import Sam
from samkit.predictor import ImageEmbedding, Prediction, Predictor
from samkit.server.limits import Limits, check_points

ID_RE = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_CACHE_BYTES = 512 * 2**20


class UnknownId(SamkitError, KeyError):
    """An image or reference id that this server never issued (or has forgotten)."""


class UnreadableUpload(ImageError):
    """Uploaded bytes that are not an image samkit decodes."""


class StoreFull(LimitError):
    """The uploads on disk have reached ``Limits.max_store_bytes``."""


def new_id() -> str:
    """A fresh, unguessable id: 32 lowercase hex characters."""
    return secrets.token_hex(16)


def check_id(kind: str, ident: str) -> str:
    """Return ``ident`` if it has the shape of our ids; raise UnknownId otherwise."""
    if not ID_RE.fullmatch(ident):
        raise UnknownId(f"no {kind} with id '{ident[:40]}': ids are 32 hex characters")
    return ident


@dataclass
class Entry:
    """A decoded image and its embedding; ``nbytes`` counts both."""

    image: np.ndarray
    embedding: ImageEmbedding

    @property
    def nbytes(self) -> int:
        f = self.embedding.features
        n = self.image.nbytes + f.embeddings.element_size() * f.embeddings.nelement()
        if f.hq_features is not None:
            n += f.hq_features.element_size() * f.hq_features.nelement()
        return n


class LruCache:
    """A thread-safe LRU bounded by the total ``nbytes`` of its values (at least one kept)."""

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._items: OrderedDict[str, Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: str) -> Entry | None:
        with self._lock:
            e = self._items.get(key)
            if e is None:
                self.misses += 1
                return None
            self.hits += 1
            self._items.move_to_end(key)
            return e

    def peek(self, key: str) -> Entry | None:
        """The entry if cached, without counting a hit or a miss or refreshing it."""
        with self._lock:
            return self._items.get(key)

    def put(self, key: str, entry: Entry) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[key] = entry
            self._bytes += entry.nbytes
            while self._bytes > self.limit_bytes and len(self._items) > 1:
                _, ev = self._items.popitem(last=False)
                self._bytes -= ev.nbytes

    def discard(self, key: str) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "entries": len(self._items),
                "bytes": self._bytes,
                "limit_bytes": self.limit_bytes,
                "hits": self.hits,
                "misses": self.misses,
            }


class Workspace:
    """Images (originals kept under ``data_dir/images``), the embedding cache, the model and its
    locks (see the module docstring). The predictor's current embedding is set inside the same
    critical section as each prompt, so no request sees another's image."""

    def __init__(
        self,
        model: Sam,
        data_dir: Path,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        limits: Limits | None = None,
    ) -> None:
        self.model = model.eval()
        self.limits = limits or Limits()
        self.predictor = Predictor(model)
        self.lock = threading.Lock()
        self.heavy = threading.Lock()
        self.decode_slots = threading.BoundedSemaphore(self.limits.decode_slots)
        self.images_dir = Path(data_dir) / "images"
        self.images_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.images_dir.glob("*.part"):  # left by a server that was killed
            stale.unlink(missing_ok=True)
        self.cache = LruCache(cache_bytes)
        # Files of a read-only source folder, by id (set by the app; see ``server.db``).
        self.locate: Callable[[str], Path | None] = lambda image_id: None
        self._store_lock = threading.Lock()
        self.store_bytes = sum(
            p.stat().st_size for p in self.images_dir.iterdir() if ID_RE.fullmatch(p.name)
        )

    # -- images ---------------------------------------------------------------------------

    def image_path(self, image_id: str) -> Path:
        """Where an image's original bytes live; only for ids that pass ``check_id``."""
        return self.images_dir / check_id("image", image_id)

    def add_image(self, data: bytes) -> tuple[str, Entry, float]:
        """Decode uploaded bytes (UnreadableUpload if they are not an image), check that the
        model can take the image, embed it, and only then keep it. Returns the new id, its
        entry and the encoder time in seconds."""
        self._reserve(len(data))
        image_id = new_id()
        path = self.image_path(image_id)
        tmp = path.with_suffix(".part")
        kept = False
        try:
            tmp.write_bytes(data)
            with self.decode_slots:
                try:
                    image = load_image(tmp)
                except LimitError as e:
                    raise type(e)(_public(e, tmp)) from None
                except ImageError as e:
                    raise UnreadableUpload(_public(e, tmp)) from None
                check_aspect_ratio(image.shape[:2], self.model.image_size)
                t0 = time.perf_counter()
                entry = self._embed(image)
                secs = time.perf_counter() - t0
                tmp.rename(path)
                kept = True
                self.cache.put(image_id, entry)
        finally:
            if not kept:
                tmp.unlink(missing_ok=True)
                self._release(len(data))
        return image_id, entry, secs

    def entry(self, image_id: str) -> Entry:
        """The image and its embedding, re-embedded from disk if the cache evicted it."""
        e = self.cache.get(check_id("image", image_id))
        if e is not None:
            return e
        path = self._existing(image_id)
        with self.decode_slots:
            e = self._embed(load_image(path))
            self.cache.put(image_id, e)
        return e

    def size(self, image_id: str) -> tuple[int, int]:
        """(H, W) of an image, from the cache or the file's header: nothing is decoded."""
        e = self.cache.peek(check_id("image", image_id))
        if e is not None:
            return e.image.shape[0], e.image.shape[1]
        return read_size(self._existing(image_id))

    def image_ids(self) -> list[str]:
        return sorted(p.name for p in self.images_dir.iterdir() if ID_RE.fullmatch(p.name))

    def delete_image(self, image_id: str) -> None:
        """Forget an image; an upload's file is deleted, a source folder is never touched."""
        path = self._existing(image_id)
        self.cache.discard(image_id)
        if path.parent != self.images_dir:
            return
        n = path.stat().st_size
        path.unlink()
        self._release(n)

    def _existing(self, image_id: str) -> Path:
        path = self.image_path(image_id)
        if not path.is_file():
            path = self.locate(image_id) or path
        if not path.is_file():
            raise UnknownId(f"no image with id '{image_id}'; upload it first (POST /api/images)")
        return path

    def _reserve(self, n: int) -> None:
        limit = self.limits.max_store_bytes
        with self._store_lock:
            if self.store_bytes + n > limit:
                raise StoreFull(
                    f"the server's image store is full ({self.store_bytes / 2**20:.1f} of "
                    f"{limit / 2**20:g} MiB used, this upload needs {n / 2**20:.1f}); delete "
                    "images (DELETE /api/images/{id}) or start the server with a larger "
                    "--max-store-mb"
                )
            self.store_bytes += n

    def _release(self, n: int) -> None:
        with self._store_lock:
            self.store_bytes -= n

    def _embed(self, image: np.ndarray) -> Entry:
        with self.lock:
            emb = self.predictor.set_image(image)
        return Entry(image, emb)

    # -- prompts --------------------------------------------------------------------------

    def predict(self, image_id: str, **prompt: Any) -> Prediction:
        """Decode one prompt (``Predictor.predict`` keywords) on a cached embedding."""
        points = prompt.get("points")
        check_points(0 if points is None else len(points), self.limits)
        entry = self.entry(image_id)
        with self.lock:
            self.predictor.set_embedding(entry.embedding)
            return self.predictor.predict(**prompt)


def _public(e: Exception, tmp: Path) -> str:
    """An error message about an upload, without the server's path in it."""
    return str(e).replace(str(tmp), "the upload")


class References:
    """Fitted PerSAM targets by id; the oldest is forgotten past ``limit``."""

    def __init__(self, limit: int = 32) -> None:
        self.limit = limit
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, persam: Any) -> str:
        ref_id = new_id()
        with self._lock:
            self._items[ref_id] = persam
            while len(self._items) > self.limit:
                self._items.popitem(last=False)
        return ref_id

    def get(self, ref_id: str) -> Any:
        with self._lock:
            per = self._items.get(check_id("reference", ref_id))
        if per is None:
            raise UnknownId(f"no reference with id '{ref_id}'; create it (POST /api/references)")
        return per

    def delete(self, ref_id: str) -> None:
        with self._lock:
            if self._items.pop(check_id("reference", ref_id), None) is None:
                raise UnknownId(f"no reference with id '{ref_id}'")
