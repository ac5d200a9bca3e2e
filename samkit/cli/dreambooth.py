"""`samkit dreambooth-masks`: the subject's mask in every DreamBooth training photo, from one
reference mask (PerSAM-assisted DreamBooth, docs/persam.md)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from samkit.cli.common import check_output_dir, load_model, model_arg

SHEET = "contact_sheet.png"
RECORD = "masks.json"


def add_dreambooth_masks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dreambooth-masks",
        help="PerSAM: the subject's mask in every DreamBooth training photo, from one mask",
        description="SUBJECT_DIR holds the training photos of one subject. The reference is "
        "--ref (default: the first photo of SUBJECT_DIR by name) and --ref-mask its mask "
        "(nonzero = subject). Writes into -o one mask per photo, <stem>.png (255 = subject; "
        "the reference photo's is --ref-mask itself), contact_sheet.png (every photo with its "
        "mask, to check them) and masks.json (how they were made, each photo's presence). "
        "Train with samkit.persam.dreambooth.masked_loss (docs/persam.md).",
    )
    p.add_argument("subject_dir", metavar="SUBJECT_DIR", help="folder of the training photos")
    p.add_argument("--ref-mask", required=True, help="mask of the subject in the reference photo")
    p.add_argument(
        "--ref", help="reference photo (default: the first photo of SUBJECT_DIR by name)"
    )
    p.add_argument("-o", "--output", required=True, help="folder for the masks (not SUBJECT_DIR)")
    p.add_argument(
        "--finetune", action="store_true", help="PerSAM-F (fit 2 scale weights; slow on CPU)"
    )
    p.add_argument(
        "--faithful",
        action="store_true",
        help="PerSAM as the official scripts, quirks included (see docs/persam.md)",
    )
    p.add_argument("--no-sheet", action="store_true", help=f"do not write {SHEET}")
    model_arg(p)
    p.set_defaults(func=cmd_dreambooth_masks)


def cmd_dreambooth_masks(args: argparse.Namespace) -> int:
    from samkit.errors import ConfigError, PromptError
    from samkit.image_io import check_pixels, load_image, load_mask, read_size
    from samkit.masks import overlay, save_mask_png
    from samkit.persam.dreambooth import contact_sheet, subject_masks
    from samkit.persam.persam import PRESENCE_THRESHOLD
    from samkit.persam.video import list_images

    # Every input and the output folder, before the model loads.
    folder = Path(args.subject_dir)
    if not folder.is_dir():
        raise ConfigError(
            f"the subject folder '{folder}' does not exist or is not a folder: give the folder "
            "of the subject's training photos"
        )
    photos = list_images(folder)
    for photo in photos:
        check_pixels(photo)
    ref = Path(args.ref) if args.ref else photos[0]
    check_pixels(ref)
    ref_mask = load_mask(args.ref_mask, size=read_size(ref))
    if not ref_mask.any():
        raise PromptError(f"the reference mask {args.ref_mask} is empty: mark the subject")
    out = check_output_dir(args.output)
    if out.resolve() == folder.resolve():
        raise ConfigError(
            f"the output folder is SUBJECT_DIR '{folder}': the masks would mix with (or "
            "overwrite) the photos; choose another folder"
        )
    stems = [p.stem for p in photos]
    clash = sorted({s for s in stems if stems.count(s) > 1 or f"{s}.png" == SHEET})
    if clash:
        raise ConfigError(
            f"photos named {', '.join(clash)} would write the same mask file (or {SHEET}); "
            "rename them"
        )

    others = [p for p in photos if p.resolve() != ref.resolve()]
    results = subject_masks(
        load_model(args),
        ref,
        args.ref_mask,
        others,
        finetune=args.finetune,
        faithful=args.faithful,
        progress=True,
    )
    found = {p: r for p, r in zip(others, results)}
    out.mkdir(parents=True, exist_ok=True)
    record: dict = {
        "model": args.model,
        "precision": args.precision,
        "reference": str(ref),
        "reference_mask": str(args.ref_mask),
        "finetune": args.finetune,
        "faithful": args.faithful,
        "photos": {},
    }
    pictures, captions, doubtful = [], [], []
    for photo in photos:
        res = found.get(photo)
        mask = ref_mask if res is None else res.mask
        save_mask_png(mask, out / f"{photo.stem}.png")
        entry: dict = {"image": str(photo), "pixels": int(mask.sum())}
        if res is None:
            entry["reference"] = True
            caption, what = f"{photo.name} (reference)", "reference mask"
        else:
            presence = res.presence if math.isfinite(res.presence) else None
            entry.update(presence=presence, score=res.score)
            caption = f"{photo.name} presence {res.presence:.2f}"
            what = f"presence {res.presence:.2f}, score {res.score:.3f}"
            if not res.presence >= PRESENCE_THRESHOLD:
                doubtful.append(photo.name)
                caption, what = caption + " CHECK", what + " (check it)"
        record["photos"][photo.stem] = entry
        print(f"{photo}: {what}, {entry['pixels']} pixels -> {out / photo.stem}.png")
        if not args.no_sheet:
            pic = overlay(load_image(photo), [mask])
            pic.thumbnail((256, 256))
            pictures.append(pic)
            captions.append(caption)
    (out / RECORD).write_text(json.dumps(record, indent=1) + "\n")
    if pictures:
        contact_sheet(pictures, captions).save(out / SHEET)
    if doubtful:
        print(
            f"{len(doubtful)} mask(s) look unlike the reference ({', '.join(doubtful)}): check "
            f"them in {out / SHEET}, fix or drop those photos"
        )
    return 0
