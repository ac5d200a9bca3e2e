"""The output folder: atomic writes, what is done, what failed, and a log of the run.

Layout of ``OUT``:
- ``<name>.json``: one per finished image (SA-1B layout). Written to a hidden temporary file
  and moved into place with ``os.replace``, so a file with this name is always complete; its
  existence is what "done" means.
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

FAILED = "failed.jsonl"
LOG = "annotate.log.jsonl"
_TMP_PREFIX = ".tmp-"


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a whole file or nothing: temporary file in the same folder, fsync, os.replace."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
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
        self.root.mkdir(parents=True, exist_ok=True)
        self.failed_path = self.root / FAILED
        self.log_path = self.root / LOG

    def result_path(self, item: ImageItem) -> Path:
        return self.root / f"{item.name}.json"

    def is_done(self, item: ImageItem) -> bool:
        return self.result_path(item).exists()

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
