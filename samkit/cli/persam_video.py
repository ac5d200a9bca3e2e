"""`samkit personalize-video`: PerSAM video object segmentation in the DAVIS layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from samkit.cli.common import check_output_dir, load_model, model_arg


def add_personalize_video(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "personalize-video",
        help="PerSAM on a video: follow the objects of the first frame's mask",
        description="FRAMES is a folder of frames sorted by name (DAVIS JPEGImages/480p/<seq>). "
        "--ref-mask is the first frame's label map (an indexed PNG as in DAVIS Annotations, "
        "or a binary mask for one object). Writes one indexed PNG per frame, named after the "
        "frame, into -o (the DAVIS results layout), and overlay.gif to look at.",
    )
    p.add_argument("frames", metavar="FRAMES", help="folder of the video's frames")
    p.add_argument("--ref-mask", required=True, help="label map of the first frame")
    p.add_argument("-o", "--output", required=True, help="folder for the label maps")
    p.add_argument(
        "--finetune", action="store_true", help="persam_video_f: 2 mixing weights per object"
    )
    p.add_argument(
        "--faithful",
        action="store_true",
        help="the official persam_video(_f).py with its quirks (see docs/persam.md)",
    )
    p.add_argument("--no-overlay", action="store_true", help="do not write overlay.gif")
    p.add_argument("--fps", type=float, default=8.0, help="frame rate of overlay.gif")
    model_arg(p)
    p.set_defaults(func=cmd_personalize_video)


def cmd_personalize_video(args: argparse.Namespace) -> int:
    from samkit.image_io import load_image
    from samkit.persam.track import PerSAMVideo
    from samkit.persam.video import list_images
    from samkit.persam.video_io import overlay_frame, read_label_png, save_gif, save_indexed_png

    frames = list_images(args.frames)
    first = read_label_png(args.ref_mask)
    out = check_output_dir(args.output)
    tracker = PerSAMVideo(load_model(args), finetune=args.finetune, faithful=args.faithful)
    out.mkdir(parents=True, exist_ok=True)
    pics = []
    for path, labels in zip(frames, tracker.track(frames, first, progress=True)):
        save_indexed_png(labels, out / f"{Path(path).stem}.png")
        if not args.no_overlay:
            pics.append(overlay_frame(load_image(path), labels))
    if pics:
        save_gif(pics, out / "overlay.gif", args.fps)
    objects = sorted(int(v) for v in set(first.flat) if v)
    print(f"{len(frames)} frames, objects {objects} -> {out}/")
    return 0
