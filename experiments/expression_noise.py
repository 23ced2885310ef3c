"""How much do the cross-identity features jitter on a face that does not move? The noise floor behind
`training.expression_metrics.NOISE_THRESHOLDS`.

One still frame per clip, copied N times with what changes between video frames of a still face but is not
expression: a shift of up to 2 px, a rotation of up to 0.5 degrees, a 1 % scale change, JPEG at quality
70-95. The std of each feature over the copies is dlib's landmark noise for that face (the small rotation
adds a true roll of std ~0.005 rad, so roll's floor is an upper bound).

    python -m experiments.expression_noise --data DATA [--clips 14] [--copies 16] [--json experiments/results/expression-landmark-noise.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from training.evaluate import find_clips
from training.expression_metrics import FEATURES, NOISE_THRESHOLDS, observe_sequence
from training.metrics import load_face_models, to_uint8


def jittered_copies(image: np.ndarray, copies: int, rng: np.random.Generator) -> list[np.ndarray]:
    size = image.shape[0]
    out = []
    for _ in range(copies):
        matrix = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-0.5, 0.5), 1 + rng.uniform(-0.01, 0.01))
        matrix[:, 2] += rng.uniform(-2, 2, 2)
        moved = cv2.warpAffine(image, matrix, (size, size), borderMode=cv2.BORDER_REPLICATE)
        quality = int(rng.integers(70, 96))
        out.append(cv2.imdecode(cv2.imencode(".jpg", moved, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_UNCHANGED))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared data (frames of train/ and test/ clips)")
    parser.add_argument("--clips", type=int, default=14, help="clips (spread over train and test), one frame each")
    parser.add_argument("--copies", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "expression-landmark-noise.json")
    args = parser.parse_args()

    faces = load_face_models()
    rng = np.random.default_rng(args.seed)
    clips = find_clips(args.data, "test") + find_clips(args.data, "train")
    picks = [clips[int(i)] for i in np.linspace(0, len(clips) - 1, min(args.clips, len(clips)))]
    stds: dict[str, list[float]] = {name: [] for name in FEATURES}
    for clip in picks:
        frame = to_uint8(clip.read_frames(256, 1)[0])
        track = observe_sequence(faces, jittered_copies(frame, args.copies, rng))
        for name in FEATURES:
            stds[name].append(float(track.features[name].std()))
    summary = {name: {"median_std": float(np.median(v)), "p90_std": float(np.percentile(v, 90)),
                      "threshold": NOISE_THRESHOLDS[name], "threshold_over_median": NOISE_THRESHOLDS[name] / float(np.median(v))}
               for name, v in stds.items()}
    report = {"description": __doc__.split("\n\n")[0], "clips": [c.clip_id for c in picks], "copies": args.copies,
              "seed": args.seed, "summary": summary, "per_clip_std": stds}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'feature':8}{'median std':>12}{'p90 std':>10}{'threshold':>11}{'x median':>10}")
    for name, s in summary.items():
        print(f"{name:8}{s['median_std']:12.4f}{s['p90_std']:10.4f}{s['threshold']:11.3f}{s['threshold_over_median']:10.1f}")
    print(f"report: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
