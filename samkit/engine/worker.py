"""One worker's loop body, shared by the local and the Ray engine: image in, JSON text out.

A worker builds its annotator (and loads its model) once. An error on one image becomes a
failed ``Outcome`` and the worker goes on; an error while building the annotator (bad model
path, bad options) is ``fatal``: the run stops, since every image would fail the same way.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from samkit.engine.collect import ImageItem
from samkit.engine.modes import ModeSpec, build_annotator
from samkit.formats import sa1b_document


@dataclass(frozen=True)
class Task:
    """An image and its prompts (boxes mode: the detections; else empty)."""

    item: ImageItem
    prompts: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Outcome:
    """text: the SA-1B JSON of the image (ok); error: why it failed; fatal: the worker could
    not start at all."""

    item: ImageItem
    ok: bool
    text: str = ""
    error: str = ""
    n_masks: int = 0
    seconds: float = 0.0
    fatal: bool = False


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


class Worker:
    """Holds one annotator; ``run(task)`` never raises for a per-image problem."""

    def __init__(self, spec: ModeSpec) -> None:
        self.made_with = spec.made_with
        self.fatal: str | None = None
        try:
            self.annotator: Any = build_annotator(spec)
        except Exception as e:
            self.fatal = _reason(e)

    def run(self, task: Task) -> Outcome:
        from samkit.image_io import load_image

        item = task.item
        if self.fatal is not None:
            return Outcome(item, False, error=self.fatal, fatal=True)
        t0 = time.perf_counter()
        try:
            image = load_image(item.path)
            anns = self.annotator(image, task.prompts)
        except Exception as e:
            return Outcome(item, False, error=_reason(e), seconds=time.perf_counter() - t0)
        h, w = image.shape[:2]
        # The settings first, so a rerun reads them without parsing the masks.
        record = {"made_with": self.made_with, **sa1b_document(anns, item.file_name, w, h)}
        return Outcome(
            item, True, json.dumps(record), n_masks=len(anns), seconds=time.perf_counter() - t0
        )
