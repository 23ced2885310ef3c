#!/usr/bin/env python
"""Equal-budget training study: teacher vs plain FOMM training, the pixel-loss default, and single switches.

    python -m experiments.equal_budget --data DATA [--runs runs/equal-budget] [--only teacher plain ...]
        [--seed N]
    python -m experiments.equal_budget --data DATA --report   # curve PNG + JSON + tables from finished runs

The runs of experiments/configs/equal-budget/ (same data, model, steps, seed; one switch each):
  teacher  the project default (landmark teacher, L1 + SSIM + gradient pixel loss)
  plain    teacher off: paper-faithful FOMM training (the baseline the teacher must beat)
  l1-only  teacher on, pixel loss L1 only (which no-VGG pixel loss trains best)
  gan      teacher on + GAN feature matching (vox-adv), the optional term
  fomm-rt  the default recipe on plain FOMM modules (same widths): is the shipped paper variant the better one?
  occ-open paper-rt with its 2x/4x occlusion heads initialised open (training.config occlusion_init_bias)
  face-perceptual  teacher on + the face-mesh perceptual loss (training/face_features.py), the VGG19 stand-in
Each is `reenact train --config experiments/configs/equal-budget/NAME.yaml --data DATA --out RUNS/NAME --resume
--eval-every 200 --eval-frames 16 --eval-spread`: the trainer's own dlib evaluation (FOMM protocol, absolute
keypoints) on the identity-disjoint test split, 16 frames evenly spaced over each clip, every 200 steps, so each
run leaves a curve in its metrics.csv. Runs one after another on one torch thread each. Resumes after an
interruption. `--seed N` re-seeds every run (the runs then go to RUNS/NAME-seedN).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from reenact_app.benchmarking import cpu_name
from training.run_metrics import metric_rows

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = Path(__file__).resolve().parent / "configs" / "equal-budget"
RUNS = ["teacher", "plain", "l1-only", "gan", "fomm-rt", "occ-open", "face-perceptual"]
LABELS = {"teacher": "teacher (default)", "plain": "plain FOMM (no teacher)", "l1-only": "teacher, L1-only loss",
          "gan": "teacher + GAN feature matching", "fomm-rt": "teacher, fomm-rt (no paper modules)",
          "occ-open": "teacher, occlusion heads init open", "face-perceptual": "teacher + face-mesh perceptual loss"}
EVAL_ARGS = ["--eval-every", "200", "--eval-frames", "16", "--eval-spread"]
METRICS = ("l1", "akd", "aed")


def run_folder(runs: Path, name: str, seed: int | None) -> Path:
    return runs / (name if seed is None else f"{name}-seed{seed}")


def train(name: str, data: Path, runs: Path, seed: int | None = None) -> None:
    config = CONFIGS / f"{name}.yaml"
    run_dir = run_folder(runs, name, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    max_steps = yaml.safe_load(config.read_text())["max_steps"]
    if _steps_done(run_dir) >= max_steps:
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "reenact_app.cli", "train", "--config", str(config), "--data", str(data),
           "--out", str(run_dir), "--resume", *EVAL_ARGS, *([] if seed is None else ["--seed", str(seed)])]
    print(time.strftime("%H:%M:%S"), name, "training", flush=True)
    with open(run_dir / "train.log", "a") as handle:
        if subprocess.run(cmd, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode != 0:
            raise RuntimeError(f"{name}: training failed, see {run_dir / 'train.log'}")


def final_evaluation(name: str, data: Path, runs: Path, seed: int | None = None) -> dict:
    """Per-clip scores of the run's final weights (same protocol and frames as the curve), for paired
    comparisons: clips differ far more from each other than runs do, so differences are taken per clip."""
    run_dir = run_folder(runs, name, seed)
    out = run_dir / "eval-final.json"
    if not out.exists():
        import torch

        from training.evaluate import evaluate_checkpoint

        torch.set_num_threads(1)
        size = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())["image_size"]
        print(time.strftime("%H:%M:%S"), name, "final evaluation", flush=True)
        report = evaluate_checkpoint(run_dir / "final.safetensors", data, max_frames=16, spread=True,
                                     image_size=size, progress=False)
        out.write_text(json.dumps(report, indent=1) + "\n")
    return json.loads(out.read_text())


def paired(reports: dict[str, dict], reference: str = "teacher") -> list[dict]:
    """Each run minus the reference, per clip: mean difference, its standard error, clips where it is lower."""
    from training.evaluate import clip_metric, paired_difference

    rows = []
    for name, report in reports.items():
        if name == reference:
            continue
        row = {"run": name, "minus": reference}
        for metric in METRICS:
            row[metric] = paired_difference(clip_metric(report, metric), clip_metric(reports[reference], metric))
        rows.append(row)
    return rows


def _steps_done(run_dir: Path) -> int:
    try:
        return int(json.loads((run_dir / "summary.json").read_text())["steps"])
    except (OSError, ValueError, KeyError):
        return 0


def curve(run_dir: Path) -> list[dict]:
    """One row per dlib evaluation: step, wall seconds of training so far, model and static metrics."""
    rows: dict[int, dict] = {}
    for row in metric_rows(run_dir / "metrics.csv"):
        if row["split"] == "val" and row["name"].startswith(("eval_", "static_")):
            entry = rows.setdefault(int(row["step"]), {"step": int(row["step"]), "wall_s": row["wall_s"]})
            entry[row["name"]] = float(row["value"])
    return [rows[s] for s in sorted(rows) if "eval_akd" in rows[s]]


def report(runs: Path, out_json: Path, out_png: Path, seed: int | None = None, names: list[str] | None = None) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folders = {name: run_folder(runs, name, seed) for name in (names or RUNS)}
    curves = {name: curve(folder) for name, folder in folders.items() if (folder / "metrics.csv").exists()}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, metric in zip(axes, METRICS):
        for name, rows in curves.items():
            if rows:
                ax.plot([r["step"] for r in rows], [r[f"eval_{metric}"] for r in rows], marker="o", label=LABELS[name])
        static = next((r[f"static_{metric}"] for rows in curves.values() for r in rows), None)
        if static is not None:
            ax.axhline(static, color="grey", linestyle="--", label="static baseline")
        ax.set_title(f"{metric.upper()} (lower is better)")
        ax.set_xlabel("training step (batch 8, 128 px)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Equal budget (128 px, 800 steps, seed {seed or 0}; paper-rt unless named): held-out dlib metrics, "
                 "20 test clips x 16 spread frames")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)
    cpu = cpu_name()
    finals = {n: json.loads((folders[n] / "eval-final.json").read_text()) for n in curves
              if (folders[n] / "eval-final.json").exists()}
    result = {"study": "equal-budget", "seed": seed or 0,
              "paired_final": paired(finals) if "teacher" in finals else [],
              "runs": {n: {"label": LABELS[n], "config": f"experiments/configs/equal-budget/{n}.yaml", "curve": rows}
                       for n, rows in curves.items()},
              "evaluation": " ".join(EVAL_ARGS),
              "hardware": f"{cpu}, {os.cpu_count()} cores shared with another training job, 1 torch thread per run"}
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(result, indent=1) + "\n")
    return result


def _pm(row: dict, metric: str, digits: int) -> str:
    """value, and +- the standard error over clips when the run logged it."""
    value, se = row[f"eval_{metric}"], row.get(f"eval_{metric}_clip_se")
    return f"{value:.{digits}f}" + ("" if se is None else f" ± {se:.{digits}f}")


def compose_samples(runs: Path, out_png: Path, names: tuple[str, ...] = ("plain", "teacher"),
                    seed: int | None = None) -> Path | None:
    """The last sample grid of each run, first 4 columns (source + keypoints, driving + keypoints, warped
    source, prediction), stacked with a label: shows where each run's keypoints ended up."""
    import cv2
    import numpy as np

    panels = []
    for name in names:
        grids = sorted((run_folder(runs, name, seed) / "samples").glob("step*.png"))
        if not grids:
            continue
        grid = cv2.imread(str(grids[-1]))
        tile = grid.shape[0] // 4  # 4 rows of square tiles
        panel = np.ascontiguousarray(grid[: 2 * tile, : 4 * tile])
        label = f"{LABELS[name]}, step {int(grids[-1].stem[4:])}"
        cv2.rectangle(panel, (0, 0), (panel.shape[1], 22), (0, 0, 0), -1)
        cv2.putText(panel, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        panels.append(panel)
    if not panels:
        return None
    cv2.imwrite(str(out_png), np.concatenate(panels, axis=0))
    return out_png


def markdown(result: dict) -> str:
    lines = ["| run | step | train wall (min) | L1 | AKD (px@256) | AED | MKR |", "|---|---|---|---|---|---|---|"]
    static = None
    for name, run in result["runs"].items():
        for r in run["curve"]:
            lines.append(f"| {run['label']} | {r['step']} | {r['wall_s'] / 60:.1f} | {_pm(r, 'l1', 4)} | "
                         f"{_pm(r, 'akd', 2)} | {_pm(r, 'aed', 3)} | {r.get('eval_mkr', float('nan')):.3f} |")
            static = r
    if static:
        lines.append(f"| static baseline | - | - | {static['static_l1']:.4f} | {static['static_akd']:.2f} | "
                     f"{static['static_aed']:.4f} | - |")
    if result.get("paired_final"):
        lines += ["", "| final weights, per clip | L1 difference | AKD difference | AED difference |", "|---|---|---|---|"]
        for row in result["paired_final"]:
            cells = [f"{row[m]['mean']:+.{d}f} ± {row[m]['se']:.{d}f} (lower on {row[m]['lower_on']}/{row[m]['clips']})"
                     for m, d in zip(METRICS, (4, 2, 3))]
            lines.append(f"| {LABELS[row['run']]} minus {LABELS[row['minus']]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="a prepared data folder (reenact prepare-data)")
    p.add_argument("--runs", type=Path, default=Path("runs/equal-budget"), help="run folders (default: runs/equal-budget)")
    p.add_argument("--seed", type=int, help="re-seed every run (default: each config's seed, 0)")
    p.add_argument("--only", nargs="*", default=None, help="subset of " + " ".join(RUNS))
    p.add_argument("--report", action="store_true", help="no training: evaluate finished runs, write the curve, "
                   "JSON and tables")
    p.add_argument("--no-final-eval", action="store_true", help="skip the per-clip evaluation of final weights")
    p.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "equal-budget.json")
    p.add_argument("--png", type=Path, default=ROOT / "docs" / "training-curves.png")
    args = p.parse_args()
    args.data, args.runs = args.data.resolve(), args.runs.resolve()  # the runs start in the repo root
    if not (args.data / "train").is_dir() or not (args.data / "test").is_dir():
        raise SystemExit(f"{args.data} is not a prepared data folder (no train/ and test/): "
                         "make one with `reenact prepare-data CLIPS -o DATA`")
    for name in RUNS:
        if args.only is None or name in args.only:
            if not args.report:
                train(name, args.data, args.runs, args.seed)
            if (run_folder(args.runs, name, args.seed) / "final.safetensors").exists() and not args.no_final_eval:
                final_evaluation(name, args.data, args.runs, args.seed)
    names = [n for n in RUNS if args.only is None or n in args.only]
    print(markdown(report(args.runs, args.json, args.png, args.seed, names)))
    if {"plain", "teacher"} <= set(names):  # the keypoints figure compares exactly these two
        compose_samples(args.runs, args.png.with_name("training-samples-plain-vs-teacher.png"), seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
