"""`samkit demo`: the main job on the bundled model — segment sample images from a click and a
box (and everything mode), write overlay pictures and print where they are."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from samkit.eval.metrics import iou
from samkit.zoo import WEIGHTS_DIR, ZOO

PHOTOS = Path("../shared/data/perseg-examples")
DEMO_SEED = 2024  # disjoint from the training seeds


def sample_images(n_synthetic: int = 3) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(name, image, ground-truth mask or None): synthetic scenes, plus the real photos in
    ../shared/data when that folder is present."""
    from samkit.data.synthetic import SceneGenerator
    from samkit.image_io import load_image, load_mask

    out: list[tuple[str, np.ndarray, np.ndarray | None]] = []
    gen = SceneGenerator(seed=DEMO_SEED, size=256)
    for i in range(n_synthetic):
        scene = gen.scene(i)
        wholes = scene.masks[scene.kinds == 0]
        gt = wholes[int(np.argmax(wholes.sum(axis=(1, 2))))] if len(wholes) else None
        out.append((f"synthetic_{i}", scene.image, gt))
    root = _photo_root()
    if root is not None:
        for p in sorted((root / "Images").glob("*/00.jpg")):
            m = root / "Annotations" / p.parent.name / "00.png"
            out.append(
                (f"photo_{p.parent.name}", load_image(p), load_mask(m) if m.exists() else None)
            )
    return out


def _prompts(shape: tuple[int, int], gt: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """A click at the object's interior (distance-transform max) and its box, or the centre."""
    h, w = shape
    if gt is None or not gt.any():
        return np.array([[w / 2, h / 2]]), np.array([w * 0.25, h * 0.25, w * 0.75, h * 0.75])
    import cv2

    dist = cv2.distanceTransform(gt.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(dist.argmax()), dist.shape)
    ys, xs = np.nonzero(gt)
    return np.array([[x, y]]), np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=float)


def run_demo(out_dir: Path, model_name: str = "samkit-tiny") -> list[Path]:
    import samkit
    from samkit.masks import overlay

    out_dir.mkdir(parents=True, exist_ok=True)
    bundled = ZOO.get(model_name)
    if (
        bundled is not None
        and bundled.url is None
        and not (WEIGHTS_DIR / bundled.filename).exists()
    ):
        from samkit.models import build_sam

        print(
            f"NOTE: the bundled model {model_name} is not trained yet; this demo runs a model "
            "with RANDOM weights, so its masks are meaningless."
        )
        model = build_sam("tiny")
    else:
        model = samkit.load(model_name)
    pred = samkit.Predictor(model)
    written: list[Path] = []
    ious: dict[str, tuple[float, float]] = {}
    for name, image, gt in sample_images():
        t0 = time.perf_counter()
        pred.set_image(image)
        t_embed = time.perf_counter() - t0
        point, box = _prompts(image.shape[:2], gt)
        click = pred.predict(point, np.array([1]))
        boxed = pred.predict(box=box, multimask=False)
        k = int(np.argmax(click.scores))
        line = f"{name:<24} {image.shape[1]}x{image.shape[0]}  embed {t_embed:.2f}s  "
        line += f"click IoU-pred {click.scores[k]:.2f}"
        if gt is not None:
            iou_c = iou(click.masks[k], gt)
            iou_b = iou(boxed.masks[0], gt)
            line += f"  | true IoU: click {iou_c:.2f}, box {iou_b:.2f}"
        pic_click = overlay(image, [click.masks[k]], points=point, labels=np.array([1]))
        pic_box = overlay(image, [boxed.masks[0]], box=box)
        p1, p2 = out_dir / f"{name}_click.png", out_dir / f"{name}_box.png"
        pic_click.save(p1)
        pic_box.save(p2)
        written += [p1, p2]
        if gt is not None:
            ious[name] = (iou_c, iou_b)
            p0 = out_dir / f"{name}_vs_truth.png"
            panels = [
                ("ground truth", overlay(image, [gt])),
                (f"1 click: IoU {iou_c:.2f}", pic_click),
                (f"box: IoU {iou_b:.2f}", pic_box),
            ]
            side_by_side(panels).save(p0)
            written.append(p0)
        try:
            from samkit.automatic import MaskGenerator
        except ImportError:
            MaskGenerator = None  # noqa: N806
        if MaskGenerator is not None:
            # The thresholds the model's card recommends (model.generator_defaults): the small
            # model predicts low IoUs, so the official 0.88 / 0.95 would keep nothing.
            gen = MaskGenerator.from_preset(model, "default", points_per_side=16)
            anns = sorted(gen.generate(image), key=lambda a: -a["area"])
            p3 = out_dir / f"{name}_everything.png"
            overlay(image, [a["segmentation"] for a in anns], alpha=0.45).save(p3)
            written.append(p3)
            line += (
                f"  everything: {len(anns)} masks (pred IoU > {gen.pred_iou_thresh}, "
                f"stability >= {gen.stability_score_thresh})"
            )
        print(line)
    photos = [v for k, v in ious.items() if k.startswith("photo_")]
    if photos:
        c, b = np.mean([v[0] for v in photos]), np.mean([v[1] for v in photos])
        print(
            f"real photos ({len(photos)}): mean IoU with the true mask: click {c:.2f}, box {b:.2f}"
        )
    written += _personalize_demo(model, out_dir)
    print(f"\nwrote {len(written)} pictures to {out_dir.resolve()}/")
    for p in written:
        print(f"  {p}")
    return written


def side_by_side(panels: list[tuple[str, object]]):  # type: ignore[no-untyped-def]
    """Pictures in a row, each with its caption above it."""
    from PIL import Image, ImageDraw

    pics = [p for _, p in panels]
    w, h = sum(p.width for p in pics), max(p.height for p in pics) + 24  # type: ignore[attr-defined]
    out = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(out)
    x = 0
    for caption, pic in panels:
        out.paste(pic, (x, 24))  # type: ignore[arg-type]
        draw.text((x + 6, 5), caption, fill=(0, 0, 0))
        x += pic.width  # type: ignore[attr-defined]
    return out


def _photo_root() -> Path | None:
    for root in (PHOTOS, Path(__file__).resolve().parents[2] / "shared/data/perseg-examples"):
        if root.exists():
            return root
    return None


def _personalize_demo(model, out_dir: Path) -> list[Path]:  # type: ignore[no-untyped-def]
    """PerSAM on the real objects: learn each object from its photo 00 and its mask, find it in
    photos 01 and 02 and compare with their true masks (synthetic concept scenes when the
    photos are not there)."""
    root = _photo_root()
    if root is None:
        return _personalize_synthetic(model, out_dir)
    import samkit
    from samkit.errors import SamkitError
    from samkit.image_io import load_image, load_mask
    from samkit.masks import overlay

    paths: list[Path] = []
    scores: list[float] = []
    for obj in sorted(p for p in (root / "Images").iterdir() if p.is_dir()):
        ann = root / "Annotations" / obj.name
        if not (obj / "00.jpg").exists() or not (ann / "00.png").exists():
            continue
        ref, ref_mask = load_image(obj / "00.jpg"), load_mask(ann / "00.png")
        try:
            per = samkit.PerSAM(model, faithful=False, presence_threshold=None).fit(ref, ref_mask)
        except SamkitError as e:
            print(f"personalize {obj.name}: skipped ({e})")
            continue
        panels = [("reference 00 (given mask)", overlay(ref, [ref_mask]))]
        for target in sorted(obj.glob("*.jpg")):
            if target.stem == "00" or not (ann / f"{target.stem}.png").exists():
                continue
            image, truth = load_image(target), load_mask(ann / f"{target.stem}.png")
            res = per.segment(image)
            score = iou(res.mask, truth)
            scores.append(score)
            print(f"personalize {obj.name}: 00 -> {target.stem}: IoU with the truth {score:.2f}")
            panels.append((f"truth {target.stem}", overlay(image, [truth])))
            panels.append(
                (
                    f"PerSAM {target.stem}: IoU {score:.2f}",
                    overlay(image, [res.mask], points=res.points, labels=res.labels),
                )
            )
        p = out_dir / f"personalize_{obj.name}.png"
        side_by_side([(c, _thumb(pic)) for c, pic in panels]).save(p)
        paths.append(p)
    if scores:
        print(f"personalize (PerSAM, real objects 00 -> 01, 02): mean IoU {np.mean(scores):.2f}")
    return paths


def _thumb(pic, height: int = 256):  # type: ignore[no-untyped-def]
    return pic.resize((max(1, round(pic.width * height / pic.height)), height))


def _personalize_synthetic(model, out_dir: Path) -> list[Path]:  # type: ignore[no-untyped-def]
    """PerSAM: learn one object from a reference scene, find it in new scenes."""
    import samkit
    from samkit.data.synthetic import SceneGenerator
    from samkit.errors import SamkitError
    from samkit.masks import overlay

    _, scenes = SceneGenerator(seed=DEMO_SEED, size=256).concept_scenes(0, n=3)

    def concept_mask(sc):  # type: ignore[no-untyped-def]
        return sc.masks[(sc.concept_ids == 0) & (sc.kinds == 0)][0]

    ref = scenes[0]
    try:
        per = samkit.PerSAM(model).fit(ref.image, concept_mask(ref))
    except SamkitError as e:
        print(f"personalize: skipped ({e})")
        return []
    paths = []
    p = out_dir / "personalize_reference.png"
    overlay(ref.image, [concept_mask(ref)]).save(p)
    paths.append(p)
    for j, sc in enumerate(scenes[1:], 1):
        res = per.segment(sc.image)
        score = iou(res.mask, concept_mask(sc))
        print(f"personalize: reference -> new scene {j}: IoU with the true object {score:.2f}")
        p = out_dir / f"personalize_target{j}.png"
        overlay(sc.image, [res.mask], points=res.points, labels=res.labels).save(p)
        paths.append(p)
    return paths
