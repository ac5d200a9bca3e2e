"""`samkit convert`: write a model in the official layout or as a Hugging Face SAM folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert weights between the official layout and Hugging Face's",
        description="Read SRC (zoo name, official .pth, .safetensors or a Hugging Face SAM "
        "folder) and write it --to official (DST .pth or .safetensors, official key names) or "
        "--to hf (DST folder: config.json + model.safetensors, as SamModel.from_pretrained "
        "reads it).",
    )
    p.add_argument("source", help="zoo name, checkpoint file or Hugging Face SAM folder")
    p.add_argument("--to", required=True, choices=("hf", "official"), help="layout to write")
    p.add_argument("-o", "--output", required=True, help="folder (hf) or .pth/.safetensors file")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    import torch

    import samkit
    from samkit.checkpoints import save_safetensors
    from samkit.cli.common import check_output_dir, check_output_file
    from samkit.hf import save_hf_folder

    if args.to == "hf":
        check_output_dir(args.output)
    else:
        check_output_file(args.output, (".pth", ".safetensors"), "official checkpoint")
    model = samkit.load(args.source, device="cpu", precision="fp32")
    if args.to == "hf":
        save_hf_folder(model, args.output)
    elif Path(args.output).suffix == ".safetensors":
        save_safetensors(model, args.output)
    else:
        torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, args.output)
    print(f"wrote {args.output} ({args.to} layout)")
    return 0
