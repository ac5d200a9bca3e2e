"""`samkit eval ...`: the evaluation protocols (clicks and boxes; HQ-SAM's mIoU / mBIoU)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from samkit.cli.common import load_model, model_arg
from samkit.cli.persam import add_persam_evals
from samkit.cli.zero_shot import add_eval_kinds


def add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a model (eval prompts DATA: 1-click, box, N-click)")
    kinds = p.add_subparsers(dest="eval_kind", required=True)
    q = kinds.add_parser(
        "prompts",
        help="click protocol of the SAM paper and box prompts on a folder, COCO json or "
        "'synthetic' held-out scenes",
    )
    add_prompts_arguments(q)
    model_arg(q, precision="fp32")
    q.set_defaults(func=cmd_eval)
    h = kinds.add_parser(
        "hq",
        help="HQ-SAM protocol: mIoU and boundary mIoU with ground-truth boxes, single mask, "
        "on an HQSeg-44K folder or 'synthetic-thin' held-out scenes (--base to compare)",
    )
    add_hq_arguments(h)
    model_arg(h, precision="fp32")
    h.set_defaults(func=cmd_eval)
    add_eval_kinds(kinds)
    add_persam_evals(kinds)


def cmd_eval(args: argparse.Namespace) -> int:
    if args.eval_kind == "hq":
        return run_hq(args, load_model(args))
    return run_prompts(args, load_model(args))


def add_prompts_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="'synthetic[:SEED]', an image+mask folder or a COCO .json")
    p.add_argument("--images", help="image folder for a COCO .json")
    p.add_argument("--clicks", type=int, default=5, help="clicks per mask (default 5)")
    p.add_argument("--limit", type=int, default=100, help="images to evaluate (default 100)")
    p.add_argument("--size", type=int, help="synthetic scene size (default: the model's input)")
    p.add_argument("--plot", help="write mIoU against clicks to this PNG")
    add_json_argument(p)


def add_json_argument(p: argparse.ArgumentParser) -> None:
    """``--json`` (bare: one JSON object on stdout; ``--json FILE``: written to FILE)."""
    p.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="print one JSON object (metric names as keys) on stdout, or write it to FILE",
    )


def add_hq_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "data",
        help="'synthetic-thin[:SEED]' (held-out thin scenes, seed 1000) or a folder in an "
        "HQSeg-44K layout (im/ + gt/, images/ + masks/, or NAME.jpg next to NAME.png)",
    )
    p.add_argument("--base", help="also evaluate this model (e.g. the SAM the HQ head sits on)")
    p.add_argument("--limit", type=int, default=100, help="images to evaluate (default 100)")
    p.add_argument("--size", type=int, help="synthetic scene size (default: the model's input)")
    p.add_argument(
        "--hq-token-only",
        action="store_true",
        help="score the HQ token's mask alone (the official harness does); default: SAM + HQ "
        "(the inference default)",
    )
    add_json_argument(p)
    p.add_argument("--plot", help="write a PNG of the first 6 images with every model's masks")


def run_prompts(args: argparse.Namespace, model) -> int:  # type: ignore[no-untyped-def]

    from samkit.data import open_dataset
    from samkit.eval.prompts import evaluate, plot_clicks

    size = args.size or model.image_size
    data = open_dataset(args.data, size, split="eval", limit=args.limit, images=args.images)
    res = evaluate(model, data, n_clicks=args.clicks, limit=args.limit, progress=True)
    summary = {"data": args.data, "model": args.model, **res.summary()}
    say = _reporter(args.json)
    say(
        f"{res.n_masks} masks on {res.n_images} images: 1-click mIoU {res.miou_1click:.3f} "
        f"(best of 3: {res.miou_1click_best_of_3:.3f}), box mIoU {res.miou_box:.3f}, "
        f"{args.clicks}-click mIoU {res.miou_clicks[-1]:.3f}"
    )
    say("mIoU per click: " + " ".join(f"{v:.3f}" for v in res.miou_clicks))
    if args.plot:
        plot_clicks({Path(str(args.model)).stem: res}, args.plot)
        say(f"plot: {args.plot}")
    _write_json(args.json, summary)
    return 0


def _reporter(json_arg: str | None):  # type: ignore[no-untyped-def]
    """Where the human-readable lines go: stderr when the JSON object takes stdout."""
    stream = sys.stderr if json_arg == "-" else sys.stdout
    return lambda line: print(line, file=stream)


def _write_json(json_arg: str | None, obj: dict) -> None:
    if json_arg == "-":
        print(json.dumps(obj))
    elif json_arg:
        Path(json_arg).write_text(json.dumps(obj, indent=1))


def run_hq(args: argparse.Namespace, model) -> int:  # type: ignore[no-untyped-def]

    from samkit.checkpoints import load
    from samkit.data.hqseg import open_hq_dataset
    from samkit.eval.hq import evaluate_hq, plot_examples

    size = args.size or model.image_size
    data = open_hq_dataset(args.data, size, limit=args.limit, train=False)
    models = [("model", str(args.model), model)]
    if args.base:
        models.insert(
            0,
            ("base", str(args.base), load(args.base, device=args.device, precision=args.precision)),
        )
    rows = {}
    for role, name, m in models:
        res = evaluate_hq(m, data, args.limit, args.hq_token_only and m.is_hq, progress=True)
        rows[role] = {"name": name, "hq": m.is_hq, **res.summary()}
    first = next(iter(rows.values()))
    say = _reporter(args.json)
    say(f"{first['n_masks']} masks on {first['n_images']} images of {args.data}, GT-box prompts")
    width = max(len(r["name"]) for r in rows.values())
    say(f"{'':6} {'model':{width}}  mIoU    mBIoU")
    for role, r in rows.items():
        say(f"{role:6} {r['name']:{width}}  {r['miou']:.4f}  {r['mbiou']:.4f}")
    if args.plot:
        named = [(Path(name).stem, m) for _, name, m in models]
        plot_examples(named, data, args.plot, hq_token_only=args.hq_token_only)
        say(f"plot: {args.plot}")
    out = {"data": args.data, "hq_token_only": args.hq_token_only, **rows}
    out |= {"miou": rows["model"]["miou"], "mbiou": rows["model"]["mbiou"]}
    _write_json(args.json, out)
    return 0
