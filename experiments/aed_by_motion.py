"""Where the identity error (AED) is lost: per-frame scores binned by how far each driving frame moved.

    python -m experiments.aed_by_motion --data DATA [--checkpoint FILE] [--max-frames 48]

Reconstruction protocol (frame 0 driven by every frame) on the held-out clips, three outputs
scored frame by frame: the static baseline (frame 0 itself), the model as configured (with the bundled
weights: the warped-source blend) and the avatar warped by the dense motion alone. Frames are binned by
their motion, the mean absolute difference from frame 0 (quartiles over all frames); frame 0, where the
driving frame *is* the source, gets its own row: there a perfect model scores 0 on every metric.
Why: AED averages still and moving frames, and whether the gap to the static baseline comes from the
output stage (visible on still frames) or from the motion (growing with it) decides what to work on.
Writes experiments/results/aed-by-motion-<frames>.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from models import load_checkpoint
from training.evaluate import find_clips, reconstruct, score_clip
from training.metrics import load_face_models
from training.warp_only import with_warp_only
from reenact_common.scripts import run_script, write_report

METRICS = ("l1", "akd", "aed")
OUTPUTS = ("static", "model", "warp")


def frame_rows(model, data: str, max_frames: int) -> list[dict]:
    """One row per frame: its motion and each output's L1 / AKD / AED."""
    faces = load_face_models()
    warp_only = with_warp_only(model)
    rows = []
    for clip in find_clips(data, "test"):
        frames = clip.read_frames(model.config.image_size, max_frames)
        model_scores, static_scores, reals = score_clip(faces, frames, reconstruct(model, frames))
        warp_scores, _, _ = score_clip(faces, frames, reconstruct(warp_only, frames), (reals, static_scores))
        for i, frame in enumerate(frames):
            row = {"clip": clip.clip_id, "frame": i, "motion": float(np.abs(frame - frames[0]).mean())}
            for name, scores in zip(OUTPUTS, (static_scores, model_scores, warp_scores)):
                row.update({f"{name}_{m}": float(getattr(scores[i], m)) for m in METRICS})
            rows.append(row)
        print(f"{clip.clip_id}: AED static {np.mean([r['static_aed'] for r in rows[-len(frames):]]):.3f} "
              f"model {np.mean([r['model_aed'] for r in rows[-len(frames):]]):.3f}", flush=True)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Frame 0 on its own, then the other frames in motion quartiles."""
    moving = [r for r in rows if r["frame"] > 0]
    edges = np.quantile([r["motion"] for r in moving], [0, 0.25, 0.5, 0.75, 1])
    groups = [("frame 0 (driving = source)", [r for r in rows if r["frame"] == 0])]
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        label = f"motion quartile {k + 1} ({lo:.4f}-{hi:.4f})"
        groups.append((label, [r for r in moving if lo <= r["motion"] <= hi and (k == 0 or r["motion"] > lo)]))
    groups.append(("all frames", rows))
    return [{"bin": label, "frames": len(group),
             **{f"{o}_{m}": float(np.mean([r[f"{o}_{m}"] for r in group])) for o in OUTPUTS for m in METRICS}}
            for label, group in groups]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--checkpoint", help="default: the bundled weights")
    parser.add_argument("--max-frames", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    model = load_checkpoint(args.checkpoint).eval()
    bins = summarise(frame_rows(model, args.data, args.max_frames))
    print("| frames | n | AED static / model / warp | L1 static / model / warp | AKD static / model / warp |")
    print("|---|---|---|---|---|")
    for b in bins:
        cells = [" / ".join(f"{b[f'{o}_{m}']:.{4 if m != 'akd' else 2}f}" for o in OUTPUTS) for m in ("aed", "l1", "akd")]
        print(f"| {b['bin']} | {b['frames']} | " + " | ".join(cells) + " |")
    out = args.out or Path(__file__).parent / "results" / f"aed-by-motion-first{args.max_frames}.json"
    write_report(out, {"checkpoint": args.checkpoint or "bundled", "data": args.data,
                       "max_frames": args.max_frames, "bins": bins})
    return 0


if __name__ == "__main__":
    run_script(main)
