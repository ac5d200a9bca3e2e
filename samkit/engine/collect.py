"""Inputs of a run: the image collection (a folder, recursively, or a manifest file of paths)
and one output name per image.

Output names: an image's stem (``photos/cat.jpg`` -> ``cat``) when no other image in the
collection has the same stem (compared case-insensitively, for case-insensitive file systems).
Stems that clash use the image's path relative to the collection root, with ``/`` replaced by
``__`` and the suffix kept after ``_`` (``a/cat.jpg`` -> ``a__cat_jpg``, ``b/cat.png`` ->
``b__cat_png``). The names depend only on the collection, so a rerun finds the same files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from samkit.errors import ConfigError
from samkit.formats import image_id_for
from samkit.image_io import IMAGE_SUFFIXES


@dataclass(frozen=True)
class ImageItem:
    """One image of the collection. path: where to read it (absolute); file_name: its path
    relative to the collection root (POSIX separators); name: output stem (``OUT/<name>.json``);
    image_id: a stable integer id derived from file_name (the same in every run and in the COCO
    export)."""

    path: str
    file_name: str
    name: str
    image_id: int


def collect(source: str | os.PathLike) -> list[ImageItem]:
    """The images of a folder (recursively, hidden entries skipped) or of a manifest file (one
    path per line; blank lines and ``#`` comments ignored; relative paths are relative to the
    manifest's folder), sorted by relative path, each with its output name. Broken or looping
    symbolic links with an image suffix are kept, so that the run records them as failed
    instead of skipping them without a word."""
    src = Path(source)
    if src.is_dir():
        root = src
        paths = sorted(
            p
            for p in src.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES
            and (p.is_file() or p.is_symlink())
            and not any(part.startswith(".") for part in p.relative_to(src).parts)
        )
        if not paths:
            raise ConfigError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {src}")
    elif src.is_file():
        paths = _read_manifest(src)
        root = Path(os.path.commonpath([p.parent for p in paths])) if paths else src.parent
    else:
        raise ConfigError(f"{src} is neither a folder of images nor a manifest file of paths")
    rels = [p.relative_to(root).as_posix() for p in paths]
    order = sorted(range(len(paths)), key=lambda i: rels[i])
    paths, rels = [paths[i] for i in order], [rels[i] for i in order]
    names = output_names(rels)
    return [
        ImageItem(os.path.abspath(p), rel, name, image_id_for(rel))
        for p, rel, name in zip(paths, rels, names)
    ]


def _read_manifest(path: Path) -> list[Path]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path} is not a text manifest; give a folder or a file with one image path per line"
        ) from None
    out: list[Path] = []
    seen: set[Path] = set()
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line) if os.path.isabs(line) else path.parent / line
        p = Path(os.path.abspath(p))
        if p not in seen:
            seen.add(p)
            out.append(p)
    if not out:
        raise ConfigError(f"the manifest {path} lists no image paths (one path per line)")
    return out


def output_names(rel_paths: list[str]) -> list[str]:
    """One unique output stem per relative path (see the module docstring for the rule)."""
    stems = [Path(r).stem for r in rel_paths]
    count: dict[str, int] = {}
    for s in stems:
        count[s.casefold()] = count.get(s.casefold(), 0) + 1
    names = []
    for rel, stem in zip(rel_paths, stems):
        if count[stem.casefold()] == 1:
            names.append(stem)
        else:
            p = Path(rel)
            names.append(p.with_suffix("").as_posix().replace("/", "__") + "_" + p.suffix[1:])
    # A clash-free rename can still meet another image's plain stem: number what remains.
    used: set[str] = set()
    unique = []
    for n in names:
        cand, i = n, 1
        while cand.casefold() in used:
            i += 1
            cand = f"{n}-{i}"
        used.add(cand.casefold())
        unique.append(cand)
    return unique
