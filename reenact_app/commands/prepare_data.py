"""`reenact prepare-data`: videos / frame folders -> VoxCeleb-style face crops, landmarks and a manifest."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare-data",
        help="crop faces from videos/frame folders into a training set (train/ test/ landmarks/ manifest.json)",
        description="mediapipe face detection picks one square box per clip (or per shot), crops are resized to "
        "--size and saved as PNG frames; mediapipe face-mesh landmarks are cached for teacher-guided training. "
        "Train/test are split by identity (guessed from the path), so no person is in both.",
    )
    p.add_argument("sources", nargs="+", type=Path, help="videos, frame folders, or folders holding them")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    p.add_argument("--size", type=int, default=256, help="crop size in pixels (default 256)")
    p.add_argument("--test-fraction", type=float, default=0.1, help="share of sources held out (by identity group)")
    p.add_argument("--test-match", action="append", default=[], metavar="TEXT",
                   help="put sources whose path contains TEXT (and everyone grouped with them) in test; repeatable")
    p.add_argument("--max-frames", type=int, help="use at most this many frames per source (quick runs)")
    p.add_argument("--box-scale", type=float, default=1.9, help="crop side / detected face size (default 1.9)")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the automatic identity split")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from training.prepare import PrepareOptions, prepare_data

    opts = PrepareOptions(
        size=args.size, test_fraction=args.test_fraction, test_match=tuple(args.test_match),
        max_frames=args.max_frames, box_scale=args.box_scale, workers=args.workers, seed=args.seed,
    )
    manifest = prepare_data(args.sources, args.output, opts)
    for item in manifest["skipped"]:
        log.warning("skipped %s: %s", item["source"], item["reason"])
    print(f"{len(manifest['clips'])} clips, {len(manifest['skipped'])} skipped -> {args.output}")
    return 0
