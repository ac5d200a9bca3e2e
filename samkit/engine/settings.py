"""How a run's results are made, recorded in each of them, so that a rerun knows which results it
may keep.

Every result file starts with ``"made_with"``: the mode, the model (as given and the sha256 of
its weights), the options that change the masks (everything mode: the preset expanded and the
generator's defaults filled in, so equal settings compare equal however they were spelled;
``points_per_batch`` is left out since it changes memory, not masks), the sha256 of the input
files a mode reads (detections, reference image and mask), and ``key``, a digest of all of
these. A rerun keeps a result only if its ``key`` equals the run's.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any

from samkit.errors import ConfigError

# Options that change how a result is computed, not what it is.
_NOT_RESULT = ("points_per_batch", "progress", "output_mode")
_HEAD_BYTES = 64 * 2**10


def everything_options(options: dict[str, Any], model: str | None = None) -> dict[str, Any]:
    """The generator options a run uses in full, in the order ``MaskGenerator.from_preset``
    applies them: MaskGenerator's defaults, the settings the model's weights recommend, the
    preset, then the given options (ConfigError for an unknown preset)."""
    from samkit.automatic import MaskGenerator
    from samkit.automatic.options import PRESETS

    opts = dict(options)
    preset = opts.pop("preset", None) or "default"
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
    defaults = {
        name: p.default
        for name, p in inspect.signature(MaskGenerator.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    full = {**defaults, **_recommended(model), **PRESETS[preset], **opts}
    return {k: _plain(v) for k, v in sorted(full.items()) if k not in _NOT_RESULT}


def _recommended(model: str | None) -> dict[str, Any]:
    """The generator settings in a model file's metadata (``samkit_generator``), read from its
    header; {} for a zoo download or a file without them."""
    from samkit.checkpoints import read_generator_defaults
    from samkit.zoo import WEIGHTS_DIR, ZOO

    if model is None:
        return {}
    if model in ZOO:
        if ZOO[model].url is not None:
            return {}
        path = WEIGHTS_DIR / ZOO[model].filename
    else:
        path = Path(model).expanduser()
    return read_generator_defaults(path) if path.is_file() else {}


def _plain(v: Any) -> Any:
    """A JSON value for an option (point_grids are numpy arrays)."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v.tolist() if hasattr(v, "tolist") else v


def model_sha256(model: str) -> str:
    """sha256 of a model's weights: the published hash of a zoo download, else the file's
    own; "" when there is no single file to hash (the run then fails to load it anyway)."""
    from samkit.zoo import WEIGHTS_DIR, ZOO, sha256_file

    if model in ZOO:
        entry = ZOO[model]
        if entry.url is not None:
            return entry.sha256
        path = WEIGHTS_DIR / entry.filename
    else:
        path = Path(model).expanduser()
    return sha256_file(path) if path.is_file() else ""


def file_sha256(path: str | os.PathLike) -> str:
    from samkit.zoo import sha256_file

    return sha256_file(Path(path))


def made_with(
    mode: str, model: str, options: dict[str, Any], inputs: dict[str, str]
) -> dict[str, Any]:
    """The record of a run's settings (see the module docstring). ``options``: as resolved by
    the mode; ``inputs``: name -> sha256 of each input file the mode reads."""
    import samkit

    digest = model_sha256(model)
    record = {
        "key": "",
        "mode": mode,
        "model": model,
        "model_sha256": digest,
        "options": options,
        "inputs": inputs,
        "samkit": samkit.__version__,
    }
    record["key"] = settings_key(record)
    return record


def settings_key(record: dict[str, Any]) -> str:
    """A digest of what makes a result what it is: mode, the weights (their sha256, else the
    model's absolute path), options, inputs and precision — not the samkit version or the way
    the model was named."""
    what = {
        "mode": record["mode"],
        "model": record["model_sha256"]
        or os.path.abspath(os.path.expanduser(str(record["model"]))),
        "options": record["options"],
        "inputs": record["inputs"],
        "precision": record.get("precision", "fp32"),
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def read_made_with(path: Path) -> dict[str, Any] | None:
    """The ``made_with`` record at the start of a result file; None if it has none (made by
    an older samkit, or not by samkit) or cannot be read."""
    prefix = '{"made_with": '
    try:
        with open(path, encoding="utf-8") as f:
            head = f.read(_HEAD_BYTES)
            if not head.startswith(prefix):
                return None
            try:
                record, _ = json.JSONDecoder().raw_decode(head, len(prefix))
            except ValueError:
                if len(head) < _HEAD_BYTES:
                    raise
                # A long record (custom point grids): read on.
                record, _ = json.JSONDecoder().raw_decode(head + f.read(), len(prefix))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return record if isinstance(record, dict) and "key" in record else None


def differences(old: dict[str, Any] | None, new: dict[str, Any]) -> str:
    """What differs between two records, for a message: "points_per_side 16 -> 32", ..."""
    if old is None:
        return "no record of its settings (made by an older samkit or by hand)"
    out = []
    if old.get("mode") != new["mode"]:
        out.append(f"mode {old.get('mode')} -> {new['mode']}")
    if (old.get("model_sha256"), old.get("model")) != (new["model_sha256"], new["model"]):
        if old.get("model") == new["model"]:
            out.append(f"model {new['model']}: its weights changed")
        else:
            out.append(f"model {old.get('model')} -> {new['model']}")
    a, b = old.get("options") or {}, new["options"]
    out += [
        f"{k} {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
    ]
    a, b = old.get("inputs") or {}, new["inputs"]
    out += [f"{k}: its file changed" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if old.get("precision", "fp32") != new.get("precision", "fp32"):
        out.append(f"precision {old.get('precision', 'fp32')} -> {new.get('precision', 'fp32')}")
    return ", ".join(out) or f"settings digest {old.get('key')} -> {new['key']}"
