"""`reenact evaluate-cross`: do the avatars follow the driver's mouth, eyes, brows and head?"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from reenact_app.commands import add_model_arguments

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate-cross",
        help="cross-identity expression transfer (held-out clips drive a set of avatars)",
        description="Held-out clips drive every avatar through the app's session and engine (relative motion, "
        "first frame as the calibrated neutral, adapt scale). dlib's 68 landmarks on driver and output give "
        "per-frame mouth opening, eye opening, brow raise, roll, yaw and pitch; per (clip, avatar) pair: "
        "Pearson r and gain = std(output)/std(driver) for each feature the driver really moves. Also: "
        "identity distance to the avatar, face-lost fraction, and optionally the classical mesh-warp "
        "reference. See docs/evaluation.md.",
    )
    p.add_argument("avatars", nargs="*", metavar="AVATAR",
                   help="avatar images (default: the bundled paintings and six portraits from the shared stills)")
    p.add_argument("--data", help="prepared data folder (with test/<clip>/00000.png...), from reenact prepare-data")
    p.add_argument("--split", default="test", help="sub-folder of --data (default: test, identity-disjoint "
                   "from training)")
    p.add_argument("--driving-videos", nargs="+", default=(), metavar="VIDEO",
                   help="raw driving videos, cropped by the app's face tracker (with or instead of --data)")
    p.add_argument("--clips", type=int, help="at most N clips of --data, spread over the split (default: all)")
    p.add_argument("--frames", type=int, help="first N frames of each clip (default: all)")
    p.add_argument("--neutral", choices=("first", "rest"), default="first",
                   help="calibration frame of each clip: its first frame (default, as the app calibrates) or its "
                   "most neutral one (mouth most closed with the eyes open), as a user calibrating at rest")
    add_model_arguments(p, engine=True)
    p.add_argument("--json", dest="json_out", help="write the full report (summary and every pair) here")
    p.add_argument("--strip", help="frame strip (JPEG): driver row, avatar rows, at mouth openings and blinks")
    p.add_argument("--reference", action="store_true", help="add the classical mesh-warp row")
    p.add_argument("--expression", type=float, default=1.0, metavar="STRENGTH",
                   help="expression retargeting strength, as in the app and reenact animate (0: off, 1: the "
                   "app's default)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for inference (0: all available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _check_outputs(json_out: str | None, strip: str | None, error: type[Exception]) -> None:
    if strip and Path(strip).suffix.lower() not in (".jpg", ".jpeg", ".png"):
        raise error(f"--strip {strip}: give a .jpg or .png file name")
    for out in filter(None, (json_out, strip)):
        try:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise error(f"can't create the folder for {out}: {exc.strerror or exc}") from exc


def run(args: argparse.Namespace) -> int:
    from models import load_checkpoint
    from reenact_app.cross_eval import default_avatar_paths, evaluate_cross, load_cross_data
    from reenact_app.engines.select import EngineOptions, create_engine
    from reenact_app.expression import ExpressionSettings
    from reenact_common.errors import MediaError

    _check_outputs(args.json_out, args.strip, MediaError)  # before any slow work
    expression = ExpressionSettings(strength=args.expression)  # a bad strength fails here, not after loading
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model = load_checkpoint(args.checkpoint, args.config)
    size = model.config.image_size
    avatars = args.avatars or default_avatar_paths()
    data = load_cross_data(args.data, avatars, clips=args.clips, frames=args.frames, size=size, split=args.split,
                           driving_videos=args.driving_videos, neutral=args.neutral, progress=not args.no_progress)
    engine = create_engine(model, args.engine, options=EngineOptions(threads=args.threads))
    del model
    try:
        weights = Path(args.checkpoint).name if args.checkpoint else "bundled weights"
        report = evaluate_cross(engine, data, expression=expression,
                                reference=args.reference, strip=args.strip,
                                label=f"{weights}, expression {args.expression:g}", progress=not args.no_progress)
    finally:
        engine.close()
    if args.json_out:
        out = Path(args.json_out)
        try:
            out.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        except OSError as exc:
            raise MediaError(f"can't write the report to {out}: {exc.strerror or exc}") from exc
    print(report.table())
    seconds = report.seconds
    print(f"engine {report.engine}; per output frame: model {seconds['model_per_frame'] * 1000:.0f} ms, "
          f"metrics {seconds['metrics_per_frame'] * 1000:.0f} ms")
    for path, what in ((args.json_out, "report"), (args.strip, "strip")):
        if path:
            print(f"{what}: {path}")
    return 0
