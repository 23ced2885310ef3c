"""What AED (and AKD) does blur alone cost? Scores Gaussian-blurred *real* frames against themselves.

Why: the shipped weights' identity distance (AED) is worse than the static baseline's even where their
keypoints are far better, and their outputs are visibly soft. Blurring the ground truth with no geometric
error at all gives a scale to read the model's AED on: "as far from the real frame as a sigma-X blur".

    python -m experiments.aed_blur_scale --data DATA [--frames 16] [--json experiments/results/aed-blur-scale.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from training.dataset import load_frames, scan_clips
from training.evaluate import spread_indices
from training.metrics import compare, load_face_models, observe_generated
from reenact_common.scripts import run_script, write_report


def blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    return image if sigma == 0 else cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="prepared data with test/")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip, spread over the clip")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "aed-blur-scale.json")
    args = parser.parse_args()

    models = load_face_models()
    clips = scan_clips(args.data, "test")
    sums = {s: {"l1": [], "akd": [], "aed": []} for s in args.sigmas}
    started = time.monotonic()
    for clip in clips:
        for rgb in load_frames(clip, spread_indices(clip.num_frames, args.frames)):
            real = models.observe(rgb)
            if not real.detected:
                continue
            for sigma in args.sigmas:
                image = blurred(rgb, sigma)
                score = compare(rgb / 255.0, real, image / 255.0, observe_generated(models, image, real))
                for key in ("l1", "akd", "aed"):
                    sums[sigma][key].append(getattr(score, key))
    rows = [{"sigma_px": s, "frames": len(v["aed"]), **{k: float(np.mean(x)) for k, x in v.items()}}
            for s, v in sums.items()]
    print(f"| Gaussian blur sigma (px at {clips[0].landmark_size or 256}) | L1 | AKD | AED | frames |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['sigma_px']:.1f} | {r['l1']:.4f} | {r['akd']:.2f} | {r['aed']:.3f} | {r['frames']} |")
    if args.json:
        write_report(args.json, {"data": str(args.data), "clips": len(clips), "frames_per_clip": args.frames,
                                 "seconds": round(time.monotonic() - started, 1), "rows": rows})
    return 0


if __name__ == "__main__":
    run_script(main)
