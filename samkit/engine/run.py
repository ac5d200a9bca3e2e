"""``annotate``: the data engine's driver. Collect, skip what is done (with the same settings:
results made with other ones are refused, or recomputed with ``force``), annotate the rest on
an engine, write each result atomically as it arrives, record failures, summarise."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from samkit.engine.coco import write_coco
from samkit.engine.collect import ImageItem, collect
from samkit.engine.exports import check_exports, write_exports
from samkit.engine.local import available_cores, run_local, worker_devices
from samkit.engine.modes import MODES, ModeSpec, load_detections
from samkit.engine.settings import (
    differences,
    everything_options,
    file_sha256,
    made_with,
    settings_key,
)
from samkit.engine.store import Store
from samkit.engine.worker import Outcome, Task
from samkit.errors import ConfigError, SamkitError

ENGINES = ("local", "ray")


@dataclass
class Summary:
    """What one run did. ``failures``: (file_name, reason) of the images that failed in it."""

    total: int
    skipped: int
    annotated: int = 0
    masks: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def images_per_min(self) -> float:
        return 60.0 * self.annotated / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 1 when some image failed."""
        return 1 if self.failures else 0

    def __str__(self) -> str:
        s = (
            f"{self.total} images: {self.annotated} annotated ({self.masks} masks), "
            f"{self.skipped} already done, {self.failed} failed; "
            f"{self.seconds:.1f} s, {self.images_per_min:.1f} images/min"
        )
        return s


def annotate(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    mode: str = "everything",
    model: str = "samkit-tiny",
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    options: dict[str, Any] | None = None,
    detections: str | os.PathLike | None = None,
    ref_image: str | os.PathLike | None = None,
    ref_mask: str | os.PathLike | None = None,
    finetune: bool = False,
    coco: str | os.PathLike | None = None,
    progress: bool | None = None,
    force: bool = False,
    device: str = "auto",
    precision: str = "fp32",
    threads: int | None = None,
    on_start: Callable[[str], None] | None = None,
    exports: Sequence[str] = (),
) -> Summary:
    """Annotate every image of ``source`` (a folder, recursively, or a manifest of paths) into
    ``out_dir`` (one SA-1B JSON per image; see ``samkit.engine.store``). Images already done
    with the same model and settings are skipped, so rerunning resumes. Results made with
    other settings are never mixed in: ConfigError naming the difference, or with ``force``
    they are deleted and recomputed. ``options``: MaskGenerator options (everything mode).
    ``workers``: processes or actors (default: one per core, or one per GPU). ``device`` /
    ``precision`` as ``samkit.load`` takes them (``threads``: torch threads per worker, default
    cores / workers); local workers get one GPU each, Ray actors
    ``num_gpus=1``; the precision is part of the recorded settings. ``on_start`` receives one
    line saying where the work runs. ``exports``: more outputs (``samkit.engine.exports``:
    yolo, masks, png, polygons).
    ``progress``: None shows a bar on a terminal only."""
    if mode not in MODES:
        raise ConfigError(f"unknown mode '{mode}'; choose one of {', '.join(MODES)}")
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine '{engine}'; choose one of {', '.join(ENGINES)}")
    if address is not None and engine != "ray":
        raise ConfigError("--address is for the ray engine; add --engine ray")
    from samkit.runtime import resolve

    rt = resolve(device, precision)  # fails here, before any work, on a bad device
    exports = check_exports(exports)
    items = collect(source)
    spec, prompts, categories = _mode_spec(
        mode, model, options, detections, ref_image, ref_mask, finetune, items
    )
    record = {**spec.made_with, "precision": rt.precision}
    record["key"] = settings_key(record)
    spec = replace(spec, made_with=record, device=str(rt.device), precision=rt.precision)
    store = Store(out_dir)
    store.remove_temporaries()
    done = _finished(items, store, spec.made_with, force)
    todo = [Task(it, prompts.get(it.file_name, [])) for it in items if it.file_name not in done]
    summary = Summary(total=len(items), skipped=len(items) - len(todo))
    on_gpu = rt.device.type == "cuda"
    if workers is not None:
        n = workers
    elif on_gpu and rt.device.index is None:
        import torch

        n = torch.cuda.device_count()
    else:
        n = available_cores() if not on_gpu else 1
    if todo:
        if engine == "local":
            if on_start is not None:
                devices = worker_devices(spec, max(1, n)) if n > 0 else [str(rt.device)]
                on_start(f"{max(n, 0)} local worker(s) on {', '.join(devices)}, {rt.describe()}")
            outcomes = run_local(todo, spec, n, threads)
        else:
            from samkit.engine.ray_backend import run_ray

            if threads is None:
                threads = max(1, available_cores() // max(1, n)) if address is None else 1
            if on_gpu:  # each actor sees its own GPU as cuda:0
                spec = replace(spec, device="cuda")
            if on_start is not None:
                gpus = ", one GPU each" if on_gpu else ""
                on_start(f"{max(1, n)} Ray actor(s){gpus}, {rt.describe()}")
            outcomes = run_ray(todo, spec, max(1, n), address, threads, 1 if on_gpu else 0)
        _consume(outcomes, store, summary, progress)
    store.finish(summary.failures)
    if coco is not None:
        write_coco(items, store, coco, categories, spec.made_with)
    if exports:
        write_exports(items, store, out_dir, exports)
    return summary


def _finished(
    items: list[ImageItem], store: Store, settings: dict[str, Any], force: bool
) -> set[str]:
    """The file names of the items whose result was made with ``settings``. Results made
    with others: ConfigError naming the difference, or (``force``) all deleted before any
    work, so that a kill leaves no mix behind."""
    done, stale = set(), []
    for it in items:
        if store.result_path(it).exists():
            old = store.made_with(it)
            if old is not None and old["key"] == settings["key"]:
                done.add(it.file_name)
            else:
                stale.append((it, old))
    if stale and not force:
        it, old = stale[0]
        raise ConfigError(
            f"{store.root} holds {len(stale)} results made with other settings than this "
            f"run's (e.g. {store.result_path(it).name}: {differences(old, settings)}); "
            "annotate into a new output folder, or add --force (force=True) to recompute them"
        )
    for it, _ in stale:
        store.remove_result(it)
    return done


def _mode_spec(
    mode: str,
    model: str,
    options: dict[str, Any] | None,
    detections: str | os.PathLike | None,
    ref_image: str | os.PathLike | None,
    ref_mask: str | os.PathLike | None,
    finetune: bool,
    items: list,
) -> tuple[ModeSpec, dict[str, list[dict[str, Any]]], list[dict[str, Any]] | None]:
    if mode == "everything":
        opts = dict(options or {})
        record = made_with(mode, model, everything_options(opts, model), {})
        return ModeSpec(mode, model, opts, record), {}, None
    if mode == "boxes":
        if detections is None:
            raise ConfigError("--mode boxes needs --detections FILE (COCO JSON with boxes)")
        prompts, cats = load_detections(detections, items)
        record = made_with(mode, model, {}, {"detections": file_sha256(detections)})
        return ModeSpec(mode, model, {}, record), prompts, cats
    if ref_image is None or ref_mask is None:
        raise ConfigError("--mode personalize needs --ref IMAGE and --ref-mask MASK")
    for p in (ref_image, ref_mask):
        if not Path(p).is_file():
            raise ConfigError(f"reference file {p} does not exist")
    opts = {"ref_image": str(ref_image), "ref_mask": str(ref_mask), "finetune": finetune}
    inputs = {"ref_image": file_sha256(ref_image), "ref_mask": file_sha256(ref_mask)}
    record = made_with(mode, model, {"finetune": finetune}, inputs)
    return ModeSpec(mode, model, opts, record), {}, None


def _consume(
    outcomes: Iterator[Outcome], store: Store, summary: Summary, progress: bool | None
) -> None:
    from tqdm import tqdm

    run_id = time.strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"
    t0 = time.perf_counter()
    total = summary.total - summary.skipped
    bar = tqdm(total=total, unit="img", disable=None if progress is None else not progress)
    try:
        for o in outcomes:
            if o.fatal:
                raise SamkitError(f"the workers could not start: {o.error}")
            if o.ok:
                store.write_result(o.item, o.text)
                store.log_done(o.item, run_id, masks=o.n_masks, seconds=round(o.seconds, 3))
                summary.annotated += 1
                summary.masks += o.n_masks
            else:
                store.record_failure(o.item, o.error)
                summary.failures.append((o.item.file_name, o.error))
            summary.seconds = time.perf_counter() - t0
            bar.update(1)
            bar.set_postfix_str(f"{summary.images_per_min:.1f} img/min, {summary.failed} failed")
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - t0
