"""Finish a samkit-tiny run: evaluate the new weights and the bundled ones on the same three sets
(real photos, held-out photo-like scenes of unseen sprites and backgrounds, held-out procedural
scenes), install the new weights when they are better on the held-out scenes (model selection
never looks at the real photos: they are the evaluation set), and write the training
curve (docs/training_curve.png), the model card (samkit/weights/samkit-tiny.md) and the
bundled-model section of docs/training.md.

    .venv/bin/python scripts/finish_tiny.py                        # after scripts/train_tiny.sh
    .venv/bin/python scripts/finish_tiny.py --export-from runs/tiny3/last.pt   # while it runs
    .venv/bin/python scripts/finish_tiny.py --warm-start SRC DST   # patch-16 -> tiny_p8 weights
    .venv/bin/python scripts/finish_tiny.py --run runs/tiny4 --prior-run runs/tiny3 \
        --old runs/tiny3/samkit-tiny.safetensors --no-install     # a later stage: compare only
    .venv/bin/python scripts/finish_tiny.py --curve-only --run runs/tiny4 --prior-run runs/tiny3
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from samkit.checkpoints import load, save_safetensors  # noqa: E402
from samkit.data import open_dataset  # noqa: E402
from samkit.eval.prompts import EvalResult, evaluate  # noqa: E402
from samkit.models import SamConfig, build_sam  # noqa: E402

WEIGHTS = ROOT / "samkit/weights/samkit-tiny.safetensors"
CURVE = ROOT / "docs/training_curve.png"
OLD = ROOT / "runs/samkit-tiny-p16.safetensors"  # the backup scripts/train_tiny.sh made
REAL = ROOT.parent / "shared/data/perseg-examples"
EVAL_SCENES = 100
CLICKS = 5
SETS = {  # name -> (--data spec of `samkit eval prompts`, description)
    "real": (str(REAL), "real photos (PerSeg examples: cat, colorful_sneaker, duck_toy)"),
    "photo": ("photo", "photo-like scenes, held-out sprites and backgrounds (seed 1000)"),
    "synthetic": ("synthetic", "procedural scenes (seed 1000)"),
}


def export_from(ck_path: Path, dst: Path, prior_steps: int = 0, prior_wall_s: float = 0.0) -> None:
    """Write a trainer checkpoint's weights to ``dst``; prior_*: steps and wall time of the
    run(s) this one was initialised from (--init)."""
    ck = torch.load(ck_path, map_location="cpu", weights_only=True)
    model = build_sam(SamConfig.from_dict(ck["model_config"]))
    model.load_state_dict(ck["model"])
    save_safetensors(
        model,
        dst,
        {
            "samkit_train_steps": str(ck["step"] + prior_steps),
            "samkit_train_wall_s": f"{ck['wall_s'] + prior_wall_s:.0f}",
            "samkit_train_command": ck["train_config"].get("command", ""),
        },
    )


def warm_start(src: Path, dst: Path, config: str = "tiny_p8") -> None:
    """Resample patch-16 weights to the finer grid of ``config``: the patch kernel is sum-pooled
    (a flat patch gives the same embedding), the absolute and relative position tables are
    interpolated to the new grid; every other weight is copied unchanged."""
    import torch.nn.functional as F

    from samkit.models import CONFIGS

    old = load(src)
    new = build_sam(CONFIGS[config])
    sd = dict(old.state_dict())
    target = new.state_dict()
    for k, v in sd.items():
        t = target[k]
        if v.shape == t.shape:
            continue
        if k.endswith("patch_embed.proj.weight"):
            f = v.shape[-1] // t.shape[-1]
            sd[k] = F.avg_pool2d(v, f) * f * f
        elif k.endswith("pos_embed"):
            g = t.shape[1:3]
            sd[k] = F.interpolate(
                v.permute(0, 3, 1, 2), size=g, mode="bicubic", align_corners=False
            ).permute(0, 2, 3, 1)
        elif "rel_pos" in k:
            sd[k] = F.interpolate(v.T[None], size=t.shape[0], mode="linear", align_corners=True)[
                0
            ].T
        else:
            raise ValueError(f"{k}: no rule to resample {tuple(v.shape)} -> {tuple(t.shape)}")
    new.load_state_dict(sd, strict=True)
    save_safetensors(new, dst, {"samkit_warm_start": f"{src.name} resampled to {config}"})


def read_history(run: Path) -> list[dict]:
    recs: dict[int, dict] = {}
    for line in (run / "history.jsonl").read_text().splitlines():
        r = json.loads(line)
        recs[r["step"]] = r  # a resumed run re-logs some steps: keep the latest
    return [recs[k] for k in sorted(recs)]


def joined_history(runs: list[Path]) -> list[dict]:
    """The histories of runs that continued one another, steps and wall time made cumulative."""
    out: list[dict] = []
    for run in runs:
        step0 = out[-1]["step"] if out else 0
        wall0 = out[-1]["wall_s"] if out else 0.0
        for h in read_history(run):
            out.append({**h, "step": h["step"] + step0, "wall_s": h["wall_s"] + wall0})
    return out


def metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def evaluate_all(path: Path, scenes: int) -> dict[str, EvalResult]:
    model = load(path)
    out = {}
    for name, (spec, _) in SETS.items():
        data = open_dataset(spec, model.image_size, split="eval", limit=scenes)
        out[name] = evaluate(model, data, n_clicks=CLICKS, limit=scenes)
    return out


def plot(history: list[dict], results: dict[str, EvalResult], old: dict, path: Path) -> None:
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
    ax[1].set_title("training mIoU (running, mixed scenes)")
    ax[1].legend(fontsize=8)
    xs = list(range(1, CLICKS + 1))
    for i, (name, res) in enumerate(results.items()):
        c = f"C{i}"
        ax[2].plot(
            xs, res.miou_clicks, marker="o", color=c, label=f"{name} (box {res.miou_box:.2f})"
        )
        ax[2].plot(xs, old[name]["miou_clicks"], ls=":", color=c, alpha=0.7)
    ax[2].set_ylim(0, 1)
    ax[2].set_xlabel("clicks")
    ax[2].set_title("mIoU per click (dotted: previous model)")
    ax[2].legend(fontsize=8)
    for a in ax:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_curve_only(history: list[dict]) -> None:
    """The training curve alone (loss and training mIoU against steps)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6), dpi=110)
    ax[0].plot(steps, [h["loss"] for h in history], label="total (per round)")
    ax[0].plot(steps, [h["dice"] for h in history], label="dice", alpha=0.7)
    ax[0].set_title("training loss")
    ax[1].plot(steps, [h["miou_first"] for h in history], label="round 1 (1 point or box)")
    ax[1].plot(steps, [h["miou_last"] for h in history], label="last round")
    ax[1].set_ylim(0, 1)
    ax[1].set_title("training mIoU (running)")
    for a in ax:
        a.set_xlabel("step (photo-like stages, cumulative)")
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(CURVE)
    plt.close(fig)


def table(new: dict[str, dict], old: dict[str, dict]) -> str:
    rows = [
        "| set | masks | 1 click (new / old) | 1 click, best of 3 | box | 5 clicks |",
        "|---|---|---|---|---|---|",
    ]
    for name, (_, desc) in SETS.items():
        n, o = new[name], old[name]
        cells = [
            f"{n[k]:.3f} / {o[k]:.3f}" for k in ("miou_1click", "miou_1click_best_of_3", "miou_box")
        ] + [f"{n['miou_clicks'][-1]:.3f} / {o['miou_clicks'][-1]:.3f}"]
        rows.append(f"| {desc} | {n['n_masks']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def commands(weights: str) -> str:
    real = "../shared/data/perseg-examples"
    return "\n".join(
        f"samkit eval prompts {spec} --model {weights} --limit {EVAL_SCENES} --clicks {CLICKS}"
        for spec in (real, "photo", "synthetic")
    )


def held_out_score(result: dict) -> float:
    """What selects a model: 1 click + box mIoU summed over the held-out photo-like and
    procedural scenes (never the real photos)."""
    return sum(result[s]["miou_box"] + result[s]["miou_1click"] for s in ("photo", "synthetic"))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--run", default=str(ROOT / "runs/tiny3"))
    p.add_argument("--export-from", help="first export this trainer checkpoint to RUN's weights")
    p.add_argument("--old", default=str(OLD), help="the previous weights to compare with")
    p.add_argument("--scenes", type=int, default=EVAL_SCENES, help="held-out scenes per set")
    p.add_argument("--prior-steps", type=int, default=10663, help="steps of the --init weights")
    p.add_argument("--prior-wall-s", type=float, default=265 * 60, help="their wall time (s)")
    p.add_argument("--no-install", action="store_true", help="never replace the bundled weights")
    p.add_argument(
        "--prior-run",
        action="append",
        default=[],
        help="earlier run folder(s) this one continued, oldest first: their history is drawn "
        "before this run's in the training curve",
    )
    p.add_argument(
        "--warm-start",
        nargs=2,
        metavar=("SRC", "DST"),
        help="only write SRC (patch-16 weights) resampled to the tiny_p8 grid to DST",
    )
    p.add_argument("--curve-only", action="store_true", help="only redraw the training curve")
    args = p.parse_args()
    if args.curve_only:
        plot_curve_only(joined_history([Path(r) for r in args.prior_run] + [Path(args.run)]))
        return 0
    if args.warm_start:
        warm_start(Path(args.warm_start[0]), Path(args.warm_start[1]))
        return 0
    torch.set_num_threads(1)
    run = Path(args.run)
    new_path = run / "samkit-tiny.safetensors"
    if args.export_from:
        export_from(Path(args.export_from), new_path)
    t = time.time()
    res = evaluate_all(new_path, args.scenes)
    new = {k: v.summary() for k, v in res.items()}
    old = {k: v.summary() for k, v in evaluate_all(Path(args.old), args.scenes).items()}
    eval_s = time.time() - t
    better = held_out_score(new) > held_out_score(old)
    meta = metadata(new_path)
    steps, wall_s = int(meta["samkit_train_steps"]), float(meta["samkit_train_wall_s"])
    summary = {
        "steps": steps,
        "wall_s": wall_s,
        "better_on_held_out": better,
        "new": new,
        "old": old,
    }
    (run / "eval.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    print(table(new, old))
    if not better or args.no_install:
        print("new weights not installed (not better on the held-out scenes, or --no-install)")
        return 0
    shutil.copy(new_path, WEIGHTS)
    print(f"installed {new_path} -> {WEIGHTS} (previous weights: {args.old})")
    plot(joined_history([Path(r) for r in args.prior_run] + [run]), res, old, CURVE)
    cfg = json.loads((run / "train_config.json").read_text())
    model = load(WEIGHTS)
    c = model.config
    g = c.image_size // c.patch_size
    fill = {
        "steps": steps,
        "prior_steps": args.prior_steps,
        "prior_min": f"{args.prior_wall_s / 60:.0f}",
        "run_steps": steps,
        "run_min": f"{wall_s / 60:.0f}",
        "total_steps": steps + args.prior_steps,
        "total_min": f"{(wall_s + args.prior_wall_s) / 60:.0f}",
        "command": meta.get("samkit_train_command") or "scripts/train_tiny.sh",
        "n_params": f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M",
        "size_mb": f"{WEIGHTS.stat().st_size / 1e6:.1f}",
        "images_seen": steps * cfg["images_per_step"],
        "masks_seen": steps * cfg["images_per_step"] * cfg["masks_per_image"],
        "rounds": cfg["rounds"],
        "lr": cfg["lr"],
        "table": table(new, old),
        "commands": commands("samkit-tiny"),
        "eval_min": f"{eval_s / 60:.1f}",
        "cfg": f"ViT width {c.encoder_embed_dim}, depth {c.encoder_depth}, "
        f"{c.encoder_num_heads} heads, global blocks {list(c.encoder_global_attn_indexes)}, "
        f"window {c.window_size}, {c.image_size} px input, patch {c.patch_size} ({g} x {g} "
        f"embedding grid, {4 * g} px low-res masks), prompt/decoder width "
        f"{c.prompt_embed_dim}, decoder MLP {c.decoder_mlp_dim}",
        **{
            f"{s}_{k}": f"{new[s][m]:.3f}"
            for s in SETS
            for k, m in (("m1", "miou_1click"), ("box", "miou_box"))
        },
    }
    card = WEIGHTS.with_suffix(".md")
    card.write_text((ROOT / "scripts/templates/tiny_card.md").read_text().format(**fill))
    doc = ROOT / "docs/training.md"
    head = doc.read_text().split("## The bundled model: samkit-tiny")[0]
    doc.write_text(head + (ROOT / "scripts/templates/tiny_doc.md").read_text().format(**fill))
    print(f"wrote {card}, {doc}, docs/training_curve.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
