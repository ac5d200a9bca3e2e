"""Parity figures of samkit vs the official segment-anything / segment-anything-hq on identical
random weights: the worst max-abs-diff per output over images x prompts x multimask.

    .venv/bin/python benchmarks/parity_report.py
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    from conftest import synthetic_image
    from official import twin_models

    from samkit.models import SamConfig
    from samkit.predictor import Predictor

    warnings.simplefilter("ignore")
    cfg = SamConfig(
        encoder_embed_dim=64, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=(1,)
    )
    images = [synthetic_image(300, 520, 3), synthetic_image(641, 333, 4)]
    photo = ROOT.parent / "shared/data/perseg-examples/Images/cat/00.jpg"
    if photo.exists():
        from samkit.image_io import load_image

        images.append(load_image(photo)[:, 200:900])
    for hq in (False, True):
        if hq:
            from segment_anything_hq import SamPredictor
        else:
            from segment_anything import SamPredictor
        off, ours = twin_models(replace(cfg, hq=hq), seed=0)
        worst = {"embedding": 0.0, "low-res logits": 0.0, "IoU predictions": 0.0}
        agree = 1.0
        n = 0
        for img in images:
            h, w = img.shape[:2]
            po, pk = SamPredictor(off), Predictor(ours)
            po.set_image(img)
            pk.set_image(img)
            e = float((po.features - pk.embedding.features.embeddings).abs().max())
            worst["embedding"] = max(worst["embedding"], e)
            prompts = [
                dict(point_coords=np.array([[w * 0.4, h * 0.5]]), point_labels=np.array([1])),
                dict(
                    point_coords=np.array([[w * 0.3, h * 0.3], [w * 0.7, h * 0.6]]),
                    point_labels=np.array([1, 0]),
                ),
                dict(box=np.array([w * 0.1, h * 0.2, w * 0.8, h * 0.7])),
            ]
            for p in prompts:
                for mm in (True, False):
                    m, s, low = po.predict(**p, multimask_output=mm)
                    r = pk.predict(
                        p.get("point_coords"), p.get("point_labels"), p.get("box"), multimask=mm
                    )
                    worst["low-res logits"] = max(
                        worst["low-res logits"], float(np.abs(low - r.logits).max())
                    )
                    worst["IoU predictions"] = max(
                        worst["IoU predictions"], float(np.abs(s - r.scores).max())
                    )
                    agree = min(agree, float((m == r.masks).mean()))
                    n += 1
        name = "HQ-SAM" if hq else "SAM"
        print(
            f"{name}: {n} cases on {len(images)} images; max abs diff: "
            + ", ".join(f"{k} {v:.2e}" for k, v in worst.items())
            + f"; worst mask pixel agreement {agree * 100:.4f}%"
        )


if __name__ == "__main__":
    main()
