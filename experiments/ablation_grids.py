#!/usr/bin/env python
"""Held-out sample grids for the ablation: the same test pairs through every run's final checkpoint.

    python -m experiments.ablation_grids [--runs runs/ablation] [--out docs/ablation]

Rows: four test clips of RUNS/evalset (identity-disjoint split), source = the clip's frame 0, driving = a
frame from the middle of the clip. Columns (training.grid.make_grid): source + keypoints, driving + keypoints,
source warped by the dense motion, prediction, occlusion map(s) (three for multi-scale runs: 1x, 2x, 4x the
dense-motion resolution, shown resized). Writes OUT/NAME.png per seed-0 run (upscaled 2x, nearest) and copies the
trainer's last training-batch grid of fomm and paper as OUT/NAME-train.png; OUT/comparison.png puts every run's prediction
for the same pairs side by side (columns: source, driving, then the seed-0 runs in experiments.ablation.RUNS order:
FOMM, paper, FOMM + CBAM, FOMM + paper attention, FOMM + CBAM + multi-scale occlusion).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np
import torch

from experiments.ablation import RUNS

ROOT = Path(__file__).resolve().parent.parent


def load_pairs(evalset: Path, size: int, rows: int = 4) -> dict[str, torch.Tensor]:
    clips = sorted(p for p in (evalset / "test").iterdir() if p.is_dir())
    picks = [clips[round(i * (len(clips) - 1) / max(1, rows - 1))] for i in range(rows)]

    def read(path: Path) -> torch.Tensor:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        return torch.from_numpy(image).permute(2, 0, 1).float() / 255

    sources, drivings = [], []
    for clip in picks:
        frames = sorted(clip.glob("*.png"))
        sources.append(read(frames[0]))
        drivings.append(read(frames[len(frames) // 2]))
    return {"source": torch.stack(sources), "driving": torch.stack(drivings)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, default=Path("runs/ablation"), help="the ablation's run folders")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "ablation")
    args = p.parse_args()
    torch.set_num_threads(1)
    from models import load_checkpoint
    from training.grid import make_grid

    args.out.mkdir(parents=True, exist_ok=True)
    columns: list[np.ndarray] = []  # comparison.png: source, driving, then each run's prediction
    for name in RUNS:
        ckpt = args.runs / name / "final.safetensors"
        if not ckpt.exists():
            print(f"{name}: no checkpoint, skipped")
            continue
        model = load_checkpoint(ckpt)
        batch = load_pairs(args.runs / "evalset", model.config.image_size)
        with torch.no_grad():
            kp_s, kp_d = model.kp_detector(batch["source"]), model.kp_detector(batch["driving"])
            generated = model.generator(batch["source"], kp_driving=kp_d, kp_source=kp_s)
        grid = make_grid(batch, kp_s, kp_d, generated)
        size = model.config.image_size
        if not columns:
            columns += [grid[:, :size], grid[:, size:2 * size]]
        if "-seed" not in name:  # the five variants at seed 0
            columns.append(grid[:, 3 * size:4 * size])
        grid = np.kron(grid, np.ones((2, 2, 1), dtype=np.uint8)) if grid.shape[0] < 512 else grid
        if "-seed" in name:  # docs keep the five seed-0 variants only
            continue
        cv2.imwrite(str(args.out / f"{name}.png"), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        samples = sorted((args.runs / name / "samples").glob("step*.png"))
        if samples and name in ("fomm", "paper"):
            shutil.copyfile(samples[-1], args.out / f"{name}-train.png")
        print(f"{name}: {args.out / (name + '.png')}")
    if columns:
        comparison = np.kron(np.concatenate(columns, axis=1), np.ones((2, 2, 1), dtype=np.uint8))
        cv2.imwrite(str(args.out / "comparison.png"), cv2.cvtColor(comparison, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f"comparison: {args.out / 'comparison.png'} (columns: source, driving, " + ", ".join(
            n for n in RUNS if "-seed" not in n and (args.runs / n / "final.safetensors").exists()) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
