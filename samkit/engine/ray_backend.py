"""The Ray engine: the same worker on Ray Data, on this machine or a cluster.

Pipeline: the image list (read) -> ``map_batches`` with a fixed pool of actors, each holding
one model (annotate) -> rows streamed back to the driver, which writes the JSON files
atomically (write). Only the driver touches OUT; the workers read the images by path, so IN
must be visible from every node (a shared file system) and samkit installed on each.
Ray is optional (``pip install 'samkit[ray]'``) and imported only here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from samkit.engine.collect import ImageItem
from samkit.engine.modes import ModeSpec
from samkit.engine.worker import Outcome, Task, Worker
from samkit.errors import ConfigError

_OUT_KEYS = ("file_name", "ok", "text", "error", "n_masks", "seconds", "fatal")


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError(
            "the ray engine needs Ray Data: pip install 'samkit[ray]' (or 'ray[data]>=2.9'), "
            "or use --engine local"
        ) from None
    return ray


class _AnnotateActor:
    """A Ray Data callable class: one model per actor, batches of image rows in, outcomes out."""

    def __init__(self, spec: ModeSpec, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.worker = Worker(spec)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        out: dict[str, list] = {k: [] for k in _OUT_KEYS}
        for i in range(len(batch["path"])):
            item = ImageItem(
                str(batch["path"][i]),
                str(batch["file_name"][i]),
                str(batch["name"][i]),
                int(batch["image_id"][i]),
            )
            o = self.worker.run(Task(item, json.loads(str(batch["prompts"][i]))))
            for k in _OUT_KEYS:
                out[k].append(o.item.file_name if k == "file_name" else getattr(o, k))
        return out


def run_ray(
    tasks: list[Task],
    spec: ModeSpec,
    workers: int,
    address: str | None = None,
    threads: int = 1,
    gpus_per_actor: float = 0,
) -> Iterator[Outcome]:
    """Annotate the tasks with ``workers`` Ray actors; yields outcomes as rows stream back.
    Uses the running Ray if there is one, else ``ray.init(address)`` (None: a local Ray).
    ``gpus_per_actor``: Ray's ``num_gpus`` of each actor (1 on GPU runs: Ray then gives each
    actor its own device, visible to it as cuda:0)."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the driver shows one bar over images
        items = {t.item.file_name: t.item for t in tasks}
        rows = [
            {
                "path": t.item.path,
                "file_name": t.item.file_name,
                "name": t.item.name,
                "image_id": t.item.image_id,
                "prompts": json.dumps(t.prompts),
            }
            for t in tasks
        ]
        ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))
        ds = ds.map_batches(
            _AnnotateActor,
            fn_constructor_kwargs={"spec": spec, "threads": threads},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=max(1, min(workers, len(rows)))),
            num_cpus=threads,
            num_gpus=gpus_per_actor,
            batch_format="numpy",
        )
        for row in ds.iter_rows():
            yield Outcome(
                items[str(row["file_name"])],
                bool(row["ok"]),
                str(row["text"]),
                str(row["error"]),
                int(row["n_masks"]),
                float(row["seconds"]),
                bool(row["fatal"]),
            )
    finally:
        if started:
            ray.shutdown()
