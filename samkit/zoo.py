"""The model zoo: names, where each checkpoint comes from (bundled or downloaded), its size and
sha256; downloads into ``$SAMKIT_HOME`` with a progress bar, resume and checksum."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from samkit.errors import CheckpointError, ChecksumError

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    url: str | None
    bytes: int | None
    sha256: str  # full hash, or a prefix where only a prefix is published
    config: str
    description: str
    filename: str

    @property
    def bundled(self) -> Path | None:
        p = WEIGHTS_DIR / self.filename
        return p if self.url is None else None


_HQ = "https://huggingface.co/lkeab/hq-sam/resolve/main/"
_SAM = "https://dl.fbaipublicfiles.com/segment_anything/"
ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry(
            "vit_b",
            _SAM + "sam_vit_b_01ec64.pth",
            375_042_383,
            "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            "vit_b",
            "SAM ViT-B (official, 94M parameters)",
            "sam_vit_b_01ec64.pth",
        ),
        ZooEntry(
            "vit_l",
            _SAM + "sam_vit_l_0b3195.pth",
            1_249_524_607,
            "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
            "vit_l",
            "SAM ViT-L (official, 312M parameters)",
            "sam_vit_l_0b3195.pth",
        ),
        ZooEntry(
            "vit_h",
            _SAM + "sam_vit_h_4b8939.pth",
            2_564_550_879,
            "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            "vit_h",
            "SAM ViT-H (official, 641M parameters)",
            "sam_vit_h_4b8939.pth",
        ),
        ZooEntry(
            "hq_vit_b",
            _HQ + "sam_hq_vit_b.pth",
            379_335_069,
            "14a9d662",
            "hq_vit_b",
            "HQ-SAM ViT-B (official)",
            "sam_hq_vit_b.pth",
        ),
        ZooEntry(
            "hq_vit_l",
            _HQ + "sam_hq_vit_l.pth",
            1_254_865_805,
            "e1a6c385",
            "hq_vit_l",
            "HQ-SAM ViT-L (official)",
            "sam_hq_vit_l.pth",
        ),
        ZooEntry(
            "hq_vit_h",
            _HQ + "sam_hq_vit_h.pth",
            2_570_940_653,
            "a7ac14a0",
            "hq_vit_h",
            "HQ-SAM ViT-H (official)",
            "sam_hq_vit_h.pth",
        ),
        ZooEntry(
            "vit_t",
            "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
            40_728_226,
            "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
            "vit_t",
            "MobileSAM: TinyViT-5M encoder distilled from SAM ViT-H (official; PerSAM's vit_t)",
            "mobile_sam.pt",
        ),
        ZooEntry(
            "hq_vit_tiny",
            _HQ + "sam_hq_vit_tiny.pth",
            42_526_881,
            "0f32c075ccdd870ae54db2f7630e7a0878ede5a2b06d05d6fe02c65a82fb7196",
            "hq_vit_tiny",
            "Light HQ-SAM: MobileSAM's TinyViT with the HQ-SAM head (official)",
            "sam_hq_vit_tiny.pth",
        ),
        ZooEntry(
            "samkit-tiny",
            None,
            None,
            "",
            "tiny",
            "samkit's own small SAM, trained on synthetic scenes (bundled, no download)",
            "samkit-tiny.safetensors",
        ),
        ZooEntry(
            "samkit-tiny-hq",
            None,
            None,
            "",
            "hq_tiny",
            "samkit-tiny with an HQ-SAM head trained on thin structures (bundled)",
            "samkit-tiny-hq.safetensors",
        ),
    ]
}


def cache_dir() -> Path:
    """Where downloads go: $SAMKIT_HOME, default ~/.cache/samkit."""
    return Path(os.environ.get("SAMKIT_HOME", Path.home() / ".cache" / "samkit"))


# -- downloads ------------------------------------------------------------------------------


def ensure_downloaded(entry: ZooEntry, progress: bool = True) -> Path:
    """Path of a zoo checkpoint, downloading (with resume and checksum) when not cached."""
    if entry.url is None:
        p = WEIGHTS_DIR / entry.filename
        if not p.exists():
            raise CheckpointError(
                f"the bundled model {entry.name} is missing from {WEIGHTS_DIR}; reinstall samkit"
            )
        return p
    dest = cache_dir() / entry.filename
    if dest.exists():
        return dest
    return download(entry.url, dest, sha256=entry.sha256, size=entry.bytes, progress=progress)


def download(
    url: str,
    dest: Path,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
    chunk: int = 1 << 20,
) -> Path:
    """Download url to dest via dest.part, resuming a partial file with an HTTP Range request,
    then verify the sha256 (or its published prefix) before renaming into place."""
    from tqdm import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the partial file is already complete
            resp = None
        else:
            raise CheckpointError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise CheckpointError(
            f"cannot reach {url} ({e}); check the network, or download the file yourself and "
            f"pass its path to samkit.load"
        ) from None
    if resp is not None:
        if have and resp.status != 206:
            have = 0  # the server ignored Range: start over
        total = size or (have + int(resp.headers.get("Content-Length", 0))) or None
        mode = "ab" if have else "wb"
        try:
            with (
                open(part, mode) as f,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    disable=not progress,
                ) as bar,
            ):
                while True:
                    buf = resp.read(chunk)
                    if not buf:
                        break
                    f.write(buf)
                    bar.update(len(buf))
        except (OSError, TimeoutError) as e:
            raise CheckpointError(
                f"download of {url} was interrupted ({e}); run the same command again to "
                f"resume from {part.stat().st_size if part.exists() else 0} bytes"
            ) from None
        finally:
            resp.close()
    got = part.stat().st_size
    if size is not None and got < size:
        raise CheckpointError(
            f"download of {url} stopped at {got} of {size} bytes; run again to resume"
        )
    if sha256:
        actual = sha256_file(part)
        if not actual.startswith(sha256):
            part.unlink()
            raise ChecksumError(
                f"checksum mismatch for {url}: expected sha256 {sha256}, got {actual}. The "
                "corrupt file was deleted; run again to download it afresh"
            )
    os.replace(part, dest)
    return dest


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for buf in iter(lambda: f.read(1 << 20), b""):
            h.update(buf)
    return h.hexdigest()
