"""Compare samkit's decoder export with the official one under onnxruntime.

    python -m samkit.export.parity [--checkpoint sam_vit_b.pth] [--model-type vit_b] [--hq]

Builds the official model (``segment_anything``, or ``segment_anything_hq`` with ``--hq``) and
samkit's with the same weights (the checkpoint, else the official random initialisation),
exports both decoders for every option, feeds both the same random prompts (1 to 10 points,
every label, with and without a mask input) and prints the largest absolute difference of each
output. Needs the official package; ``orig_im_size`` keeps the official dummy's 2:3 aspect
ratio, the only one its traced crop gets right (see docs/interop.md).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samkit.export.onnx import DECODER_OUTPUTS, export_decoder


def official_export(model: Any, path: Path, hq: bool = False, **options: bool) -> None:
    """The official export script's call (scripts/export_onnx_model.py), condensed."""
    if hq:
        from segment_anything_hq.utils.onnx import SamOnnxModel
    else:
        from segment_anything.utils.onnx import SamOnnxModel
    c = model.prompt_encoder.embed_dim
    grid = model.prompt_encoder.image_embedding_size
    dummy: dict[str, torch.Tensor] = {"image_embeddings": torch.randn(1, c, *grid)}
    if hq:
        vit_dim = model.mask_decoder.compress_vit_feat[0].in_channels
        dummy["interm_embeddings"] = torch.randn(1, 1, *grid, vit_dim)
    dummy.update(
        point_coords=torch.randint(0, 1024, (1, 5, 2)).float(),
        point_labels=torch.randint(0, 4, (1, 5)).float(),
        mask_input=torch.randn(1, 1, 4 * grid[0], 4 * grid[1]),
        has_mask_input=torch.tensor([1.0]),
        orig_im_size=torch.tensor([1500, 2250], dtype=torch.float),
    )
    with torch.no_grad():
        torch.onnx.export(
            SamOnnxModel(model, **options),
            tuple(dummy.values()),
            str(path),
            input_names=list(dummy),
            output_names=DECODER_OUTPUTS,
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )


def random_feed(model: Any, n_points: int, seed: int, hq: bool = False) -> dict[str, np.ndarray]:
    """Decoder inputs: random embedding and prompts, labels from -1 to 3."""
    rng = np.random.default_rng(seed)
    c = model.prompt_encoder.embed_dim
    h, w = model.prompt_encoder.image_embedding_size
    s = model.image_encoder.img_size
    feed = {
        "image_embeddings": rng.normal(size=(1, c, h, w)).astype(np.float32),
        "point_coords": rng.uniform(0, s, (1, n_points, 2)).astype(np.float32),
        "point_labels": rng.integers(-1, 4, (1, n_points)).astype(np.float32),
        "mask_input": rng.normal(size=(1, 1, 4 * h, 4 * w)).astype(np.float32),
        "has_mask_input": np.array([float(seed % 2)], np.float32),
        "orig_im_size": np.array([480, 720], np.float32),
    }
    if hq:
        vit_dim = model.mask_decoder.compress_vit_feat[0].in_channels
        feed["interm_embeddings"] = rng.normal(size=(1, 1, h, w, vit_dim)).astype(np.float32)
    return feed


def compare(
    official: Any, ours: Any, hq: bool, options: dict[str, bool], points: tuple[int, ...]
) -> list[float]:
    """Largest |official - samkit| per decoder output over the prompts."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        official_export(official, Path(tmp) / "official.onnx", hq, **options)
        export_decoder(ours, Path(tmp) / "samkit.onnx", **options)
        a = ort.InferenceSession(str(Path(tmp) / "official.onnx"))
        b = ort.InferenceSession(str(Path(tmp) / "samkit.onnx"))
        worst = np.zeros(len(DECODER_OUTPUTS))
        for seed, n in enumerate(points):
            feed = random_feed(ours, n, seed, hq)
            diffs = [np.abs(x - y).max() for x, y in zip(a.run(None, feed), b.run(None, feed))]
            worst = np.maximum(worst, diffs)
    return [float(v) for v in worst]


def compare_sizes(
    official: Any, ours: Any, sizes: tuple[tuple[int, int], ...]
) -> list[tuple[float, float]]:
    """For each (H, W): largest |export - official PyTorch SamOnnxModel| of ``masks``, for the
    official export and for samkit's (SAM, 4 masks)."""
    import onnxruntime as ort
    from segment_anything.utils.onnx import SamOnnxModel

    from samkit.export.onnx import DECODER_INPUTS

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        official_export(official, Path(tmp) / "official.onnx", return_single_mask=False)
        export_decoder(ours, Path(tmp) / "samkit.onnx")
        a = ort.InferenceSession(str(Path(tmp) / "official.onnx"))
        b = ort.InferenceSession(str(Path(tmp) / "samkit.onnx"))
        for size in sizes:
            feed = random_feed(ours, 2, seed=5)
            feed["orig_im_size"] = np.array(size, np.float32)
            with torch.no_grad():
                args = [torch.from_numpy(feed[k]) for k in DECODER_INPUTS]
                want = SamOnnxModel(official, return_single_mask=False)(*args)[0].numpy()
            out.append(
                (
                    float(np.abs(a.run(None, feed)[0] - want).max()),
                    float(np.abs(b.run(None, feed)[0] - want).max()),
                )
            )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="official-layout .pth (default: random weights)")
    p.add_argument("--model-type", default="vit_b", help="vit_b, vit_l or vit_h")
    p.add_argument("--hq", action="store_true", help="HQ-SAM (segment_anything_hq)")
    args = p.parse_args(argv)
    if args.hq:
        from segment_anything_hq import sam_model_registry
    else:
        from segment_anything import sam_model_registry

    from samkit.checkpoints import load
    from samkit.models import build_sam

    torch.manual_seed(0)  # the random initialisation, when there is no checkpoint
    official = sam_model_registry[args.model_type](checkpoint=args.checkpoint).eval()
    if args.checkpoint:
        ours = load(args.checkpoint, device="cpu")
    else:
        ours = build_sam(("hq_" if args.hq else "") + args.model_type)
        ours.load_state_dict(official.state_dict())
    variants = (
        [{"hq_token_only": False}, {"hq_token_only": True}, {"multimask_output": True}]
        if args.hq
        else [{"return_single_mask": False}, {"return_single_mask": True}]
    )
    weights = args.checkpoint or "random weights"
    print(f"{'HQ-SAM' if args.hq else 'SAM'} {args.model_type}, {weights}: max |official - samkit|")
    print(f"{'options':<28}" + "".join(f"{o:>16}" for o in DECODER_OUTPUTS))
    for options in variants:
        worst = compare(official, ours, args.hq, options, (1, 2, 3, 6, 10))
        name = ", ".join(k for k, v in options.items() if v) or "default"
        print(f"{name:<28}" + "".join(f"{v:>16.1e}" for v in worst))
    if not args.hq:
        sizes = ((480, 720), (500, 400), (1000, 1000), (77, 1300))
        print("masks at other image sizes: max |export - official PyTorch SamOnnxModel|")
        print(f"{'H x W':<28}{'official export':>16}{'samkit export':>16}")
        for (h, w), (off_err, our_err) in zip(sizes, compare_sizes(official, ours, sizes)):
            print(f"{f'{h} x {w}':<28}{off_err:>16.1e}{our_err:>16.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
