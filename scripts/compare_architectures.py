"""Choose the bundled model's architecture by measured accuracy per CPU-hour: train each
candidate from scratch for the same wall time on the same data (`--data mix`, one thread), then
evaluate each on the held-out photo-like scenes and the real photos, and write one table.

    .venv/bin/python scripts/compare_architectures.py --minutes 12 --out runs/arch
    .venv/bin/python scripts/compare_architectures.py --table-only --out runs/arch   # reprint

On the CPU, 10 minutes (about 575 steps of one thread) is too short to tell: every candidate
trained from scratch first collapses to empty masks (measured: mIoU 0.0007 on the photo-like
scenes after 575 steps of `vit_p16_160`), and the earlier from-scratch run needed ~1300 steps to
reach 0.31. Run it where steps are cheap: `--device cuda --minutes 20` on a GPU.

Resumable: a candidate whose folder already holds its evaluation is not trained again; one cut
off mid-training continues from its last checkpoint (the trainer resumes `OUT/last.pt`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
REAL = ROOT.parent / "shared/data/perseg-examples"

# name -> (--config value, what it is). JSON configs are SamConfig fields (samkit train --config).
CANDIDATES: dict[str, tuple[str | dict, str]] = {
    "vit_p16_160": ("tiny", "ViT 192 wide, depth 6, patch 16 at 160 px (10 x 10 grid)"),
    "vit_p8_160": ("tiny_p8", "ViT 192 wide, depth 6, patch 8 at 160 px (20 x 20 grid)"),
    "tinyvit_320": (
        {
            "image_size": 320,
            "patch_size": 16,
            "prompt_embed_dim": 128,
            "decoder_mlp_dim": 512,
            "iou_head_hidden_dim": 128,
            "tiny_vit": {
                "embed_dims": [32, 64, 96, 160],
                "depths": [2, 2, 4, 2],
                "num_heads": [1, 2, 3, 5],
                "window_sizes": [5, 5, 10, 5],
            },
        },
        "TinyViT (conv stages 32/64, attention 96/160), 320 px, stride 16 (20 x 20 grid)",
    ),
}


def run(cmd: list[str], log: Path) -> None:
    with log.open("a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)


def evaluate(weights: Path, data: str, threads: int) -> dict:
    cmd = [PY, "-m", "samkit", "eval", "prompts", data, "--model", str(weights), "--limit", "50"]
    cmd += ["--clicks", "1", "--threads", str(threads), "--precision", "fp32", "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out)


def train_one(name: str, out: Path, minutes: float, threads: int, device: str) -> dict:
    spec, _ = CANDIDATES[name]
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    result = folder / "result.json"
    if result.exists():
        return json.loads(result.read_text())
    config = spec
    if isinstance(spec, dict):
        config = str(folder / "config.json")
        Path(config).write_text(json.dumps(spec, indent=1))
    weights = folder / "weights.safetensors"
    t0 = time.time()
    run(
        [PY, "-m", "samkit", "train", "--data", "mix", "--config", str(config)]
        + ["--out", str(folder)]
        + ["--minutes", str(minutes), "--steps", "100000", "--images-per-step", "4"]
        + ["--masks-per-image", "4", "--rounds", "5", "--lr", "5e-4", "--warmup", "100"]
        + ["--seed", "7", "--threads", str(threads), "--device", device]
        + ["--checkpoint-every", "120"]
        + ["--log-every", "25", "--no-progress", "--export", str(weights)],
        folder / "log.txt",
    )
    history = [json.loads(x) for x in (folder / "history.jsonl").read_text().splitlines() if x]
    from samkit.checkpoints import load

    model = load(weights)
    r = {
        "name": name,
        "steps": history[-1]["step"] if history else 0,
        "train_wall_s": round(time.time() - t0),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "photo": evaluate(weights, "photo", threads),
        "real": evaluate(weights, str(REAL), threads) if REAL.exists() else None,
    }
    result.write_text(json.dumps(r, indent=1))
    return r


def table(results: list[dict], minutes: float) -> str:
    rows = [
        f"| candidate | params | steps in {minutes:g} min | photo-like scenes: box / 1 click "
        "| real photos: box / 1 click |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        _, what = CANDIDATES[r["name"]]
        real = r["real"] or {"miou_box": float("nan"), "miou_1click": float("nan")}
        rows.append(
            f"| `{r['name']}`: {what} | {r['params_m']}M | {r['steps']} | "
            f"{r['photo']['miou_box']:.3f} / {r['photo']['miou_1click']:.3f} | "
            f"{real['miou_box']:.3f} / {real['miou_1click']:.3f} |"
        )
    return "\n".join(rows)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=12.0, help="training wall time per candidate")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="training device (cpu, cuda, ...)")
    ap.add_argument("--out", default=str(ROOT / "runs/arch"))
    ap.add_argument("--only", nargs="*", choices=sorted(CANDIDATES), help="candidates to run")
    ap.add_argument("--table-only", action="store_true", help="print the table of finished runs")
    a = ap.parse_args()
    out = Path(a.out)
    results = []
    for name in a.only or list(CANDIDATES):
        if a.table_only:
            f = out / name / "result.json"
            if f.exists():
                results.append(json.loads(f.read_text()))
            continue
        print(f"{name}: training {a.minutes:g} min ...", flush=True)
        results.append(train_one(name, out, a.minutes, a.threads, a.device))
    print(table(results, a.minutes))


if __name__ == "__main__":
    main()
