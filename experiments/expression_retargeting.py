"""Expression retargeting, measured cross-identity: the app's session with retargeting off (the model's
motion alone), at the default strength, and variants of its mouth and eye mapping, on the same held-out
clips and avatars.

Each arm is paired per (clip, avatar) against the model alone: mean difference of r with its standard
error and how many pairs improved, for mouth and eyes.

    python -m experiments.expression_retargeting --data prepared/shared256 --clips 8 --frames 48 \
        --arms "model alone" "retargeting (default)" --strip docs/cross-identity-strip.jpg
    python -m experiments.expression_retargeting --data prepared/shared256 --clips 8 --frames 48 \
        --neutral rest --arms "model alone" "retargeting (default)" \
        --json experiments/results/expression-retargeting-rest.json
    python -m experiments.expression_retargeting --data prepared/shared256 --neutral rest --clips 8 --frames 48 \
        --arms "eye mapping: shut at 0.5, dead zone 0.12" ... --json eye-mapping.json   # the eye rows
    python -m experiments.expression_retargeting --data prepared/shared256 --split train --clips 12 \
        --neutral rest --arms "model alone" "retargeting (default)" --json train.json   # to choose settings on
"""

from __future__ import annotations

import argparse
import logging

from reenact_app.cross_eval import default_avatar_paths, evaluate_cross, load_cross_data
from reenact_app.engines.select import create_engine
from reenact_app.expression import ExpressionSettings
from reenact_app.session import AnimationSession, MotionSettings
from reenact_common.scripts import run_script, write_report
from training.cross_pairs import compare

ARMS: dict[str, ExpressionSettings] = {
    "model alone": ExpressionSettings(strength=0.0),
    "retargeting (default)": ExpressionSettings(),
    "retargeting, mouth by keypoints only": ExpressionSettings(mouth_image_gain=0.0),
    "retargeting, mouth in the picture only": ExpressionSettings(mouth_gain=0.0),
    "retargeting, v0.4's eye mapping (dead zone 0.12, shut at 0.3 of the open aspect)": ExpressionSettings(
        eye_dead_zone=0.12, eye_closed_ratio=0.3),
    # the eye mapping's neighbours (the default: shut at 0.5 of the open aspect, dead zone 0.06)
    "eye mapping: shut at 0.5, dead zone 0.12": ExpressionSettings(eye_dead_zone=0.12),
    "eye mapping: shut at 0.6, dead zone 0.12": ExpressionSettings(eye_dead_zone=0.12, eye_closed_ratio=0.6),
    "eye mapping: shut at 0.6, dead zone 0.06": ExpressionSettings(eye_closed_ratio=0.6),
    "eye mapping: shut at 0.5, dead zone 0": ExpressionSettings(eye_dead_zone=0.0),
}


def paired(base, arm) -> dict:
    """Per-pair change of r against `base` for mouth and eyes (training.cross_pairs, over the pairs where
    the driver moves the feature)."""
    result = compare(base.to_dict(), arm.to_dict())
    return {f: {"pairs": p.pairs, "mean_dr": p.r_difference, "se": p.r_difference_se, "higher_on": p.r_higher}
            for f, p in result.items() if f in ("mouth", "eyes")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="prepared data folder (reenact prepare-data)")
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--engine", default="auto")
    p.add_argument("--split", default="test", choices=("test", "train"),
                   help="driver clips from the held-out split (reported) or the training split (to choose settings on)")
    p.add_argument("--neutral", default="first", choices=("first", "rest"),
                   help="calibrate each pair on the clip's first frame (the app's default) or its most neutral one")
    p.add_argument("--arms", nargs="*", default=list(ARMS), help="arm names (default: all)")
    p.add_argument("--json", default="experiments/results/expression-retargeting.json")
    p.add_argument("--strip", help="frame strip of the default arm")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    data = load_cross_data(args.data, default_avatar_paths(), clips=args.clips, frames=args.frames,
                           split=args.split, neutral=args.neutral)
    engine = create_engine(None, args.engine)
    reports = {}
    for name in args.arms:
        settings = ARMS[name]
        reports[name] = evaluate_cross(
            engine, data, session_factory=lambda e, s=settings: AnimationSession(e, MotionSettings(), s),
            reference=name == "model alone", label=name,
            strip=args.strip if name == "retargeting (default)" else None)
        print(f"\n## {name}\n{reports[name].table()}", flush=True)
    base = reports.get("model alone")
    result = {"data": {"clips": reports[args.arms[0]].clips, "avatars": reports[args.arms[0]].avatars,
                       "frames": args.frames, "neutral": args.neutral, "split": args.split}, "engine": engine.describe(), "arms": {}}
    for name, report in reports.items():
        entry = {"settings": vars(ARMS[name]), "summary": report.to_dict()["summary"]}
        if base is not None and report is not base:
            entry["paired_vs_model_alone"] = paired(base, report)
            print(name, entry["paired_vs_model_alone"])
        result["arms"][name] = entry
    engine.close()
    write_report(args.json, result, indent=2)
    return 0


if __name__ == "__main__":
    run_script(main)
