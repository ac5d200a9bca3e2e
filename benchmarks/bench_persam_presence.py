"""PerSAM on synthetic concept scenes: is the object there (presence score: recall and
false-positive rate over thresholds), and how much do several references of one object help.

    .venv/bin/python benchmarks/bench_persam_presence.py [--model samkit-tiny] [--concepts 40]
        [--plot docs/persam_presence.png] [--finetune] [--faithful] [--threads 1]
    .venv/bin/python benchmarks/bench_persam_presence.py --video 10 [--plot docs/persam_video.png]

--video N instead measures the video pipeline (``PerSAMVideo``, official algorithm, faithful
and fixed, PerSAM and PerSAM-F) on N synthetic clips: two concepts moving over a textured
background for 12 frames, scored with the DAVIS J&F of ``samkit.eval.davis``.

Each concept (``SceneGenerator(seed=2025).concept_scenes``) is shown in 3 reference scenes and
4 test scenes; the absent cases are 4 scenes of random objects (``SceneGenerator(seed=2026)``)
per concept. The same run scores, for comparison, the two signals users try first: the top
cosine similarity (the official issue #13's suggestion) and the decoder's predicted IoU.
Few-shot: mean IoU with the true object over the present scenes with 1, 2 and 3 references
(no presence threshold, so only the segmentation is compared). PerSAM runs with
``faithful=False`` unless --faithful: on samkit-tiny's 10 x 10 feature grid the official mask
pooling refuses many of the small synthetic objects.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import samkit
from samkit.data.synthetic import SceneGenerator
from samkit.eval.metrics import iou
from samkit.persam.persam import PRESENCE_THRESHOLD, PerSAM

N_REF, N_TEST = 3, 4


def concept_mask(scene) -> np.ndarray:  # type: ignore[no-untyped-def]
    return scene.masks[(scene.concept_ids == 0) & (scene.kinds == 0)][0]


def curve(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Thresholds, recall and false-positive rate at each, and the area under the ROC curve."""
    finite = np.concatenate([pos, neg])
    finite = finite[np.isfinite(finite)]
    ts = np.unique(np.concatenate([finite, [-np.inf, np.inf]]))
    recall = np.array([(pos >= t).mean() for t in ts])
    fpr = np.array([(neg >= t).mean() for t in ts])
    auc = float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())
    return ts, recall, fpr, auc


def synthetic_clip(seed: int, frames: int = 12, size: int = 160):  # type: ignore[no-untyped-def]
    """Two concepts gliding (and turning) over a textured background: frames (H x W x 3 uint8)
    and label maps (1, 2; the later object drawn on top)."""
    import cv2

    from samkit.data.synthetic import CANVAS, TEXTURES, draw_texture, make_concept

    rng = np.random.default_rng([seed, 7])
    bg = draw_texture(rng, str(rng.choice(TEXTURES)), size, size)
    objs = [make_concept(rng, shape=str(rng.choice(["ellipse", "polygon", "blob"]))) for _ in "ab"]
    paths = [
        (
            rng.uniform(0.25, 0.75, 2) * size,
            rng.uniform(-2.5, 2.5, 2),
            rng.uniform(0, 360),
            rng.uniform(-4, 4),
            rng.uniform(0.45, 0.6) * size / CANVAS,
        )
        for _ in objs
    ]
    images, labels = [], []
    for t in range(frames):
        img, lab = bg.copy(), np.zeros((size, size), np.int32)
        for k, (c, (p0, v, a0, va, s)) in enumerate(zip(objs, paths), 1):
            cx, cy = np.clip(p0 + v * t, 0.15 * size, 0.85 * size)
            M = cv2.getRotationMatrix2D((CANVAS / 2, CANVAS / 2), a0 + va * t, s)
            M[:, 2] += (cx - CANVAS / 2, cy - CANVAS / 2)
            tex = cv2.warpAffine(c.image, M, (size, size), flags=cv2.INTER_LINEAR)
            m = cv2.warpAffine(c.masks[0].astype(np.uint8), M, (size, size)) > 0
            img[m] = tex[m]
            lab[m] = k
        images.append(np.clip(img, 0, 255).astype(np.uint8))
        labels.append(lab)
    return images, labels


def video_table(model, n: int, plot: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """J&F of the video pipeline, faithful vs fixed, PerSAM vs PerSAM-F, on n synthetic clips."""
    import tempfile
    from pathlib import Path

    from samkit.errors import PromptError
    from samkit.eval.davis import evaluate_davis
    from samkit.persam.track import PerSAMVideo
    from samkit.persam.video_io import overlay_frame, save_indexed_png

    print(f"PerSAM video, samkit-tiny, {n} synthetic clips of 12 frames, 2 objects each\n")
    print("| method | mode | J&F | J | F | clips refused |")
    print("|---|---|---|---|---|---|")
    clips = [synthetic_clip(i) for i in range(n)]
    for finetune in (False, True):
        for faithful in (True, False):
            with tempfile.TemporaryDirectory() as tmp:
                root, refused = Path(tmp), 0
                for i, (frames, labels) in enumerate(clips):
                    gt, pred = root / "gt" / f"{i:03d}", root / "pred" / f"{i:03d}"
                    gt.mkdir(parents=True)
                    pred.mkdir(parents=True)
                    tracker = PerSAMVideo(model, finetune=finetune, faithful=faithful)
                    try:
                        out = list(tracker.track(frames, labels[0]))
                    except PromptError:  # faithful: an object too small for the pooling
                        out = [labels[0]] + [np.zeros_like(labels[0])] * (len(frames) - 1)
                        refused += 1
                    if plot and i == 0 and finetune and not faithful:
                        strip = [overlay_frame(frames[t], out[t]) for t in (0, 4, 8, 11)]
                    for t, (g, p) in enumerate(zip(labels, out)):
                        save_indexed_png(g, gt / f"{t:05d}.png")
                        save_indexed_png(p, pred / f"{t:05d}.png")
                res = evaluate_davis(root / "pred", root / "gt")
            name = "PerSAM-F" if finetune else "PerSAM"
            mode = "faithful" if faithful else "fixed"
            scores = f"{res['JF']:.1f} | {res['J']:.1f} | {res['F']:.1f}"
            print(f"| {name} | {mode} | {scores} | {refused} |")
    if plot:
        from PIL import Image

        sheet = Image.new("RGB", (sum(p.width for p in strip) + 6 * 3, strip[0].height), "white")
        for k, pic in enumerate(strip):
            sheet.paste(pic, (k * (pic.width + 6), 0))
        sheet.save(plot)
        print(f"\nwrote {plot} (clip 0, frames 0, 4, 8, 11, PerSAM-F fixed)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="samkit-tiny")
    ap.add_argument("--concepts", type=int, default=40)
    ap.add_argument("--plot", default=None, help="write the recall / false-positive curve here")
    ap.add_argument("--finetune", action="store_true", help="PerSAM-F instead of PerSAM")
    ap.add_argument("--faithful", action="store_true", help="faithful=True (official quirks)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--video", type=int, default=0, help="measure video on N synthetic clips")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = samkit.load(args.model, precision="fp32")
    if args.video:
        video_table(model, args.video, args.plot)
        return
    concepts = SceneGenerator(seed=2025, size=160)
    others = SceneGenerator(seed=2026, size=160)
    signals: dict[str, tuple[list[float], list[float]]] = {
        "presence (samkit)": ([], []),
        "top similarity": ([], []),
        "predicted IoU": ([], []),
    }
    shots_iou: dict[int, list[float]] = {k: [] for k in range(1, N_REF + 1)}
    t0 = time.perf_counter()
    used = 0
    for c in range(args.concepts):
        _, scenes = concepts.concept_scenes(c, n=N_REF + N_TEST)
        if not all(((s.concept_ids == 0) & (s.kinds == 0)).any() for s in scenes):
            continue  # the concept came out under the minimum area in some scene
        used += 1
        refs, tests = scenes[:N_REF], scenes[N_REF:]
        absent = [others.scene(c * N_TEST + j) for j in range(N_TEST)]
        for k in range(1, N_REF + 1):
            per = PerSAM(
                model, finetune=args.finetune, faithful=args.faithful, presence_threshold=None
            ).fit([r.image for r in refs[:k]], [concept_mask(r) for r in refs[:k]])
            for sc in tests:
                res = per.segment(sc.image)
                shots_iou[k].append(iou(res.mask, concept_mask(sc)))
                if k == 1:
                    for name, value in zip(
                        signals, (res.presence, float(res.similarity.max()), res.score)
                    ):
                        signals[name][0].append(value)
            if k == 1:
                for sc in absent:
                    res = per.segment(sc.image)
                    for name, value in zip(
                        signals, (res.presence, float(res.similarity.max()), res.score)
                    ):
                        signals[name][1].append(value)
    secs = time.perf_counter() - t0
    method = "PerSAM-F" if args.finetune else "PerSAM"
    n_pos, n_neg = (len(v) for v in signals["presence (samkit)"])
    mode = "faithful" if args.faithful else "fixed"
    print(
        f"{method} ({mode}), {args.model}, {used} of {args.concepts} concepts (the others are "
        f"too small in some scene): {n_pos} present, {n_neg} absent scenes, {secs:.0f} s\n"
    )
    print("| signal | ROC AUC | recall / false-positive rate at the default threshold |")
    print("|---|---|---|")
    curves = {}
    for name, (pos, neg) in signals.items():
        p, n = np.array(pos), np.array(neg)
        curves[name] = curve(p, n)
        at = ""
        if name.startswith("presence"):
            at = f"{(p >= PRESENCE_THRESHOLD).mean():.3f} / {(n >= PRESENCE_THRESHOLD).mean():.3f}"
            at += f" (threshold {PRESENCE_THRESHOLD})"
        print(f"| {name} | {curves[name][3]:.3f} | {at} |")
    print("\n| references | mIoU over present scenes | gain over 1 |")
    print("|---|---|---|")
    base = float(np.mean(shots_iou[1]))
    for k, vals in shots_iou.items():
        m = float(np.mean(vals))
        print(f"| {k} | {m:.3f} | {m - base:+.3f} |")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 4.2))
        for name, (_, rec, fpr, auc) in curves.items():
            ax.plot(fpr, rec, label=f"{name} (AUC {auc:.2f})")
        pos, neg = (np.array(v) for v in signals["presence (samkit)"])
        ax.plot(
            (neg >= PRESENCE_THRESHOLD).mean(),
            (pos >= PRESENCE_THRESHOLD).mean(),
            "ko",
            label=f"default threshold {PRESENCE_THRESHOLD}",
        )
        ax.plot([0, 1], [0, 1], ":", color="gray", lw=1)
        ax.set_xlabel("false-positive rate (absent object reported)")
        ax.set_ylabel("recall (present object reported)")
        ax.set_title(f"{method} presence, {args.model}, synthetic scenes", fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"\nwrote {args.plot}")


if __name__ == "__main__":
    main()
