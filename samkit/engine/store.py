"""The output folder: atomic writes, what is done, what failed, and a log of the run.

Layout of ``OUT``:
- ``<name>.json``: one per finished image (SA-1B layout, preceded by ``made_with``: see
  ``samkit.engine.settings``). Written to a hidden temporary file and moved into place with
  ``os.replace``, so a file with this name is always complete. "Done" means the file exists
  and was made with the run's settings.
- ``failed.jsonl``: ``{"image": ..., "error": ...}`` per failed image. Lines are appended as
  failures happen; when a run finishes the file is rewritten to hold exactly that run's
  failures (and removed if there were none).
- ``annotate.log.jsonl``: one line per image annotated, with the run id, for auditing.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from samkit.engine.collect import ImageItem
from samkit.engine.settings import read_made_with
from samkit.errors import ConfigError

FAILED = "failed.jsonl"
LOG = "annotate.log.jsonl"
_TMP_PREFIX = ".tmp-"
# Read once, while importing (single-threaded): os.umask can only be read by setting it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a whole file or nothing: temporary file in the same folder, fsync, os.replace.
    The file gets the permissions of any other new file (mkstemp's are owner-only)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _append_line(path: Path, obj: dict[str, Any]) -> None:
    # One small O_APPEND write per line: a kill cannot interleave or half-write it.
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(obj) + "\n")


class Store:
    """Bookkeeping of one output folder (see the module docstring)."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.root = Path(out_dir)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(
                f"cannot create the output folder {self.root} ({e.strerror}); choose another"
            ) from None
        self.failed_path = self.root / FAILED
        self.log_path = self.root / LOG

    def result_path(self, item: ImageItem) -> Path:
        return self.root / f"{item.name}.json"

    def made_with(self, item: ImageItem) -> dict[str, Any] | None:
        """The settings record of the image's result; None if there is no result or it has no
        record."""
        p = self.result_path(item)
        return read_made_with(p) if p.exists() else None

    def remove_result(self, item: ImageItem) -> None:
        self.result_path(item).unlink(missing_ok=True)

    def remove_temporaries(self) -> int:
        """Delete temporary files left by a killed run; returns how many."""
        stale = list(self.root.glob(_TMP_PREFIX + "*"))
        for p in stale:
            p.unlink(missing_ok=True)
        return len(stale)

    def write_result(self, item: ImageItem, text: str) -> None:
        atomic_write_text(self.result_path(item), text)

    def log_done(self, item: ImageItem, run_id: str, **info: Any) -> None:
        _append_line(self.log_path, {"run": run_id, "image": item.file_name, **info})

    def record_failure(self, item: ImageItem, error: str) -> None:
        _append_line(self.failed_path, {"image": item.file_name, "error": error})

    def finish(self, failures: list[tuple[str, str]]) -> None:
        """Make failed.jsonl hold exactly this run's failures (file_name, reason), atomically."""
        if not failures:
            self.failed_path.unlink(missing_ok=True)
            return
        lines = [json.dumps({"image": fn, "error": err}) for fn, err in failures]
        atomic_write_text(self.failed_path, "\n".join(lines) + "\n")
