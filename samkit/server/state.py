"""Server state: uploaded images on disk, their embeddings in a byte-bounded LRU, and the one
model behind a lock. Ids are server-generated hex tokens, checked against ``ID_RE`` before any
path is built from them, so no client-supplied string ever names a file."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samkit.errors import ImageError, SamkitError
from samkit.image_io import load_image
from samkit.models.sam import Sam
from samkit.predictor import ImageEmbedding, Prediction, Predictor

ID_RE = re.compile(r"^[0-9a-f]{32}$")
DEFAULT_CACHE_BYTES = 512 * 2**20


class UnknownId(SamkitError, KeyError):
    """An image or reference id that this server never issued (or has forgotten)."""


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
    lock. Every model call goes through ``self.lock``; the predictor's current embedding is set
    inside the same critical section, so no request sees another's image."""

    def __init__(self, model: Sam, data_dir: Path, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.model = model.eval()
        self.predictor = Predictor(model)
        self.lock = threading.Lock()
        self.images_dir = Path(data_dir) / "images"
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.cache = LruCache(cache_bytes)

    # -- images ---------------------------------------------------------------------------

    def image_path(self, image_id: str) -> Path:
        """Where an image's original bytes live; only for ids that pass ``check_id``."""
        return self.images_dir / check_id("image", image_id)

    def add_image(self, data: bytes) -> tuple[str, Entry, float]:
        """Store uploaded bytes, decode them (ImageError if they are not an image) and embed.
        Returns the new id, its entry and the encoder time in seconds."""
        image_id = new_id()
        path = self.image_path(image_id)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        try:
            image = load_image(tmp)
        except ImageError as e:
            tmp.unlink(missing_ok=True)
            # The message names our file; the client must not learn server paths.
            raise ImageError(str(e).replace(str(tmp), "the upload")) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        tmp.rename(path)
        t0 = time.perf_counter()
        entry = self._embed(image)
        self.cache.put(image_id, entry)
        return image_id, entry, time.perf_counter() - t0

    def entry(self, image_id: str) -> Entry:
        """The image and its embedding, re-embedded from disk if the cache evicted it."""
        e = self.cache.get(check_id("image", image_id))
        if e is not None:
            return e
        path = self.image_path(image_id)
        if not path.is_file():
            raise UnknownId(f"no image with id '{image_id}'; upload it first (POST /api/images)")
        e = self._embed(load_image(path))
        self.cache.put(image_id, e)
        return e

    def image_ids(self) -> list[str]:
        return sorted(p.name for p in self.images_dir.iterdir() if ID_RE.fullmatch(p.name))

    def delete_image(self, image_id: str) -> None:
        path = self.image_path(image_id)
        if not path.is_file():
            raise UnknownId(f"no image with id '{image_id}'")
        self.cache.discard(image_id)
        path.unlink()

    def _embed(self, image: np.ndarray) -> Entry:
        with self.lock:
            emb = self.predictor.set_image(image)
        return Entry(image, emb)

    # -- prompts --------------------------------------------------------------------------

    def predict(self, image_id: str, **prompt: Any) -> Prediction:
        """Decode one prompt (``Predictor.predict`` keywords) on a cached embedding."""
        entry = self.entry(image_id)
        with self.lock:
            self.predictor.set_embedding(entry.embedding)
            return self.predictor.predict(**prompt)


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
