"""Evaluate the bundled samkit-tiny weights on held-out synthetic scenes, then write the training
curve (docs/training_curve.png), the model card (samkit/weights/samkit-tiny.md) and
docs/training.md from runs/tiny.

    .venv/bin/python scripts/finish_tiny.py                            # after training ended
    .venv/bin/python scripts/finish_tiny.py --export-from runs/tiny/last.pt   # while it runs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from samkit.checkpoints import load, save_safetensors  # noqa: E402
from samkit.data.synthetic import SyntheticDataset  # noqa: E402
from samkit.eval.prompts import EvalResult, evaluate  # noqa: E402
from samkit.data import SYNTHETIC_EVAL_SEED  # noqa: E402
from samkit.models import SamConfig, build_sam  # noqa: E402

WEIGHTS = ROOT / "samkit/weights/samkit-tiny.safetensors"
EVAL_SCENES = 100
CLICKS = 5


def export_from(ck_path: Path, prior_steps: int = 0, prior_wall_s: float = 0.0) -> dict:
    """prior_*: steps and wall time of the run(s) this one was initialised from (--init)."""
    ck = torch.load(ck_path, map_location="cpu", weights_only=True)
    ck["step"] += prior_steps
    ck["wall_s"] += prior_wall_s
    model = build_sam(SamConfig.from_dict(ck["model_config"]))
    model.load_state_dict(ck["model"])
    cfg = ck["train_config"]
    save_safetensors(
        model,
        WEIGHTS,
        {
            "samkit_train_steps": str(ck["step"]),
            "samkit_train_wall_s": f"{ck['wall_s']:.0f}",
            "samkit_train_command": cfg.get("command", ""),
        },
    )
    return ck


def read_history(run: Path) -> list[dict]:
    recs: dict[int, dict] = {}
    for line in (run / "history.jsonl").read_text().splitlines():
        r = json.loads(line)
        recs[r["step"]] = r  # a resumed run re-logs some steps: keep the latest
    return [recs[k] for k in sorted(recs)]


def plot(history: list[dict], res: EvalResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6), dpi=110)
    ax[0].plot(steps, [h["loss"] for h in history], label="total (per round)")
    ax[0].plot(steps, [20 * h["focal"] for h in history], label="20 x focal", alpha=0.7)
    ax[0].plot(steps, [h["dice"] for h in history], label="dice", alpha=0.7)
    ax[0].set_xlabel("step")
    ax[0].set_title("training loss")
    ax[0].legend(fontsize=8)
    ax[1].plot(steps, [h["miou_first"] for h in history], label="round 1 (1 point or box)")
    ax[1].plot(steps, [h["miou_last"] for h in history], label="last round")
    ax[1].set_ylim(0, 1)
    ax[1].set_xlabel("step")
    ax[1].set_title("training mIoU (running)")
    ax[1].legend(fontsize=8)
    xs = list(range(1, len(res.miou_clicks) + 1))
    ax[2].plot(xs, res.miou_clicks, marker="o", label="clicks")
    ax[2].axhline(res.miou_box, color="C1", ls="--", label=f"box {res.miou_box:.3f}")
    ax[2].scatter([1], [res.miou_1click_best_of_3], color="C2", label="1 click, best of 3")
    ax[2].set_ylim(0, 1)
    ax[2].set_xlabel("clicks")
    ax[2].set_title(f"held-out scenes ({res.n_masks} masks)")
    ax[2].legend(fontsize=8)
    for a in ax:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--run", default=str(ROOT / "runs/tiny"))
    p.add_argument("--export-from", help="export this trainer checkpoint to the bundled weights")
    p.add_argument("--scenes", type=int, default=EVAL_SCENES, help="held-out scenes to evaluate")
    p.add_argument("--prior-steps", type=int, default=0, help="steps before --init (continued)")
    p.add_argument("--prior-wall-s", type=float, default=0.0, help="their wall time (s)")
    args = p.parse_args()
    torch.set_num_threads(1)
    run = Path(args.run)
    ck = None
    if args.export_from:
        ck = export_from(Path(args.export_from), args.prior_steps, args.prior_wall_s)
    model = load(WEIGHTS)
    from safetensors import safe_open

    with safe_open(str(WEIGHTS), framework="pt") as f:
        meta = f.metadata()
    steps, wall_s = int(meta["samkit_train_steps"]), float(meta["samkit_train_wall_s"])
    command = meta.get("samkit_train_command", "")
    t = time.time()
    data = SyntheticDataset(seed=SYNTHETIC_EVAL_SEED, size=model.image_size, length=args.scenes)
    res = evaluate(model, data, n_clicks=CLICKS, progress=False)
    eval_s = time.time() - t
    summary = {"steps": steps, "wall_s": wall_s, **res.summary()}
    (run / "eval.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    history = read_history(run)
    plot(history, res, ROOT / "docs/training_curve.png")
    cfg = json.loads((run / "train_config.json").read_text()) if ck is None else ck["train_config"]
    n_params = sum(p.numel() for p in model.parameters())
    c = model.config
    fill = {
        "steps": steps,
        "wall_min": f"{wall_s / 60:.0f}",
        "command": command or "scripts/train_tiny.sh",
        "n_params": f"{n_params / 1e6:.2f}M",
        "size_mb": f"{WEIGHTS.stat().st_size / 1e6:.1f}",
        "masks_seen": steps * cfg["images_per_step"] * cfg["masks_per_image"],
        "images_seen": steps * cfg["images_per_step"],
        "rounds": cfg["rounds"],
        "n_masks": res.n_masks,
        "n_images": res.n_images,
        "m1": f"{res.miou_1click:.3f}",
        "m1b": f"{res.miou_1click_best_of_3:.3f}",
        "mbox": f"{res.miou_box:.3f}",
        "clicks": " | ".join(f"{v:.3f}" for v in res.miou_clicks),
        "clicks_head": " | ".join(str(i + 1) for i in range(len(res.miou_clicks))),
        "clicks_sep": " | ".join("---" for _ in res.miou_clicks),
        "eval_min": f"{eval_s / 60:.1f}",
        "cfg": f"ViT width {c.encoder_embed_dim}, depth {c.encoder_depth}, "
        f"{c.encoder_num_heads} heads, global blocks {list(c.encoder_global_attn_indexes)}, "
        f"window {c.window_size}, {c.image_size} px input ({c.image_size // c.patch_size} x "
        f"{c.image_size // c.patch_size} embedding grid, {c.image_size // 4} px low-res masks), "
        f"prompt/decoder width {c.prompt_embed_dim}, decoder MLP {c.decoder_mlp_dim}",
        "lr": cfg["lr"],
        "decay": " and ".join(f"{f:.0%}" for f in cfg.get("decay_at", [])),
    }
    for name, dest in (("card", WEIGHTS.with_suffix(".md")), ("doc", ROOT / "docs/training.md")):
        tmpl = (ROOT / f"scripts/templates/tiny_{name}.md").read_text()
        dest.write_text(tmpl.format(**fill))
        print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
