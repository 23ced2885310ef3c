"""`reenact evaluate`: FOMM reconstruction metrics (L1, AKD, AED, MKR) of a checkpoint vs the static baseline."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="reconstruction metrics (L1, AKD, AED, MKR) on a prepared test split",
        description="FOMM reconstruction protocol: each test clip's first frame is the source and every frame "
        "drives it with absolute keypoints. Landmarks and identity come from dlib (never from the mediapipe "
        "training teacher). The static baseline (output = source frame) is reported alongside.",
    )
    p.add_argument("--checkpoint", help="project .safetensors or upstream .pth.tar (default: bundled weights)")
    p.add_argument("--data", required=True, help="prepared data folder (with test/ of frame folders or videos)")
    p.add_argument("--json", dest="json_out", required=True, help="write the full report here")
    p.add_argument("--config", help="upstream FOMM YAML or preset name (needed for .pth.tar checkpoints)")
    p.add_argument("--split", default="test", help="sub-folder of --data to evaluate (default: test)")
    p.add_argument("--max-frames", type=int, help="at most N frames per clip (default: all)")
    p.add_argument("--spread", action="store_true",
                   help="with --max-frames: N frames evenly spaced over each clip instead of the first N "
                   "(samples whole clips, like the all-frames protocol)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--clips", type=int, help="at most N clips, spread evenly over the split (default: all)")
    p.add_argument("--batch-size", type=int, default=4, help="driving frames per forward pass (default: 4)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reenact_common.errors import MediaError
    from reenact_common.video_io import check_writable
    from training.evaluate import evaluate

    check_writable(args.json_out, suffix=None, create_folder=True)  # before the evaluation, not after
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    report = evaluate(
        args.checkpoint, args.data, config=args.config, split=args.split, max_frames=args.max_frames,
        max_clips=args.clips, batch_size=args.batch_size, device=args.device, spread=args.spread,
    ).to_dict()
    out = Path(args.json_out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    except OSError as exc:
        raise MediaError(f"can't write the report to {out}: {exc.strerror or exc}") from exc
    print(summary(report))
    print(f"report: {out}")
    return 0


def summary(report: dict[str, Any]) -> str:
    """A small table: overall model vs static baseline, then timing."""
    rows = [f"{'':16}{'L1':>9}{'AKD':>9}{'AED':>9}{'MKR':>9}"]
    for name, key in (("model", "model"), ("static baseline", "static_baseline")):
        m = report["overall"][key]
        mkr = "n/a" if m["mkr"] is None else f"{m['mkr']:.3f}"
        rows.append(f"{name:16}{m['l1']:9.4f}{m['akd']:9.3f}{m['aed']:9.4f}{mkr:>9}")
    t = report["timing"]
    rows.append(
        f"{len(report['clips'])} clip(s), {t['frames']} frames; per frame: model {t['model_seconds_per_frame'] * 1000:.0f} ms, "
        f"metrics {t['metrics_seconds_per_frame'] * 1000:.0f} ms"
    )
    return "\n".join(rows)
