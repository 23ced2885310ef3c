#!/usr/bin/env python
"""Ablation of the paper's modules: train the runs of experiments/configs/ablation/ and evaluate each.

    python -m experiments.ablation --data DATA [--runs runs/ablation]
                                   [--parallel 2] [--frames 16] [--only fomm paper ...]
    python -m experiments.ablation --table     # markdown table for docs/training-results.md

For every run: `reenact train --config experiments/configs/ablation/NAME.yaml --data DATA --out RUNS/NAME --resume`
(skipped when RUNS/NAME/summary.json says the run reached max_steps; resumes after an interruption), then
`reenact evaluate --checkpoint RUNS/NAME/final.safetensors --data RUNS/evalset --json RUNS/NAME/eval.json`.

The evaluation set RUNS/evalset/test/ holds, for every clip of DATA/test/ (the identity-disjoint held-out
split), FRAMES frames spread evenly over the clip (frame 0 first, as the FOMM protocol's source), as symlinks
to the prepared PNGs: the same clips and frames for every run. (`reenact evaluate --max-frames N` would take
the first N frames; `--max-frames N --spread` now samples like this evalset.)

The final checkpoint (max_steps) is evaluated, not best.safetensors, so that no run gets a choice the others
don't. Results: RUNS/NAME/eval.json per run and one summary, experiments/results/ablation.json.
Each process runs with one torch thread (OMP_NUM_THREADS=1; the configs set threads: 1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from reenact_app.benchmarking import cpu_name
from reenact_common.video_io import IMAGE_SUFFIXES
from training.run_metrics import train_seconds

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = Path(__file__).resolve().parent / "configs" / "ablation"
RESULT = Path(__file__).resolve().parent / "results" / "ablation.json"
# Order = priority: the two that matter most (and their second seeds) first.
RUNS = ["fomm", "paper", "fomm-seed1", "paper-seed1", "fomm-cbam", "fomm-paperatt", "fomm-cbam-msocc",
        "fomm-seed2", "paper-seed2"]  # the seed-2 pair is extra (a third point for seed noise)
LABELS = {
    "fomm": "FOMM",
    "fomm-cbam": "FOMM + CBAM",
    "fomm-paperatt": "FOMM + paper attention",
    "fomm-cbam-msocc": "FOMM + CBAM + multi-scale occlusion",
    "paper": "full paper model (paper attention + multi-scale occlusion)",
    "fomm-seed1": "FOMM, seed 1",
    "paper-seed1": "full paper model, seed 1",
    "fomm-seed2": "FOMM, seed 2",
    "paper-seed2": "full paper model, seed 2",
}


def build_evalset(data: Path, out: Path, frames: int) -> Path:
    """RUNS/evalset/test/CLIP/NNNNN.png -> evenly spaced frames of DATA/test/CLIP (idempotent)."""
    test = out / "test"
    for clip in sorted(p for p in (data / "test").iterdir() if p.is_dir()):
        paths = sorted(p for p in clip.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            continue
        n = min(frames, len(paths))
        picks = sorted({round(i * (len(paths) - 1) / max(1, n - 1)) for i in range(n)})
        target = test / clip.name
        target.mkdir(parents=True, exist_ok=True)
        for i, index in enumerate(picks):
            link = target / f"{i:05d}{paths[index].suffix.lower()}"
            if not link.exists():
                link.symlink_to(paths[index].resolve())
    (out / "frames.json").write_text(json.dumps({"source": str(data / "test"), "frames_per_clip": frames}, indent=1))
    return out


def _alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        return b"train" in cmdline
    except (OSError, ValueError):
        return False


def _done(run_dir: Path, max_steps: int) -> bool:
    try:
        return json.loads((run_dir / "summary.json").read_text())["steps"] >= max_steps
    except (OSError, ValueError, KeyError):
        return False


def job(name: str, args: argparse.Namespace, evalset: Path, log) -> dict:
    config = CONFIGS / f"{name}.yaml"
    max_steps = yaml.safe_load(config.read_text())["max_steps"]
    run_dir = args.runs / name
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    pid_file = run_dir / "train.pid"
    while _alive(pid_file):  # started by hand or by an earlier invocation: wait for it
        time.sleep(10)
    if not _done(run_dir, max_steps):
        log(f"{name}: training")
        cmd = [sys.executable, "-m", "reenact_app.cli", "train", "--config", str(config), "--data", str(args.data),
               "--out", str(run_dir), "--resume"]
        with open(run_dir / "train.log", "a") as handle:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
            pid_file.write_text(str(proc.pid))
            if proc.wait() != 0:
                raise RuntimeError(f"{name}: training failed, see {run_dir / 'train.log'}")
    summary = json.loads((run_dir / "summary.json").read_text())
    eval_json = run_dir / "eval.json"
    if not eval_json.exists():
        log(f"{name}: evaluating")
        started = time.time()
        cmd = [sys.executable, "-m", "reenact_app.cli", "evaluate", "--checkpoint", str(run_dir / "final.safetensors"),
               "--data", str(evalset), "--json", str(eval_json)]
        with open(run_dir / "eval.log", "a") as handle:
            if subprocess.run(cmd, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT).returncode != 0:
                raise RuntimeError(f"{name}: evaluation failed, see {run_dir / 'eval.log'}")
        (run_dir / "eval_seconds.txt").write_text(f"{time.time() - started:.1f}\n")
    report = json.loads(eval_json.read_text())
    train_s = train_seconds(run_dir)
    log(f"{name}: done ({train_s:.0f} s training)")
    return {
        "run": name, "label": LABELS.get(name, name), "config": str(config.relative_to(ROOT)),
        "steps": summary["steps"], "train_wall_s": round(train_s, 1),
        "eval_wall_s": float((run_dir / "eval_seconds.txt").read_text()) if (run_dir / "eval_seconds.txt").exists() else None,
        "model": report["overall"]["model"], "static_baseline": report["overall"]["static_baseline"],
        "clips": {c["clip"]: c["model"] for c in report["clips"]},
        "trainer_validation": _last_val(run_dir),
    }


def _last_val(run_dir: Path) -> dict[str, float]:
    """The trainer's own held-out check at the last step: val_l1 and val_motion (teacher landmarks; 32 pairs)."""
    import csv

    values: dict[str, float] = {}
    try:
        with open(run_dir / "metrics.csv") as handle:
            rows = [r for r in csv.DictReader(handle) if r["split"] == "val"]
    except OSError:
        return values
    if rows:
        last = max(int(r["step"]) for r in rows)
        values = {r["name"]: float(r["value"]) for r in rows if int(r["step"]) == last}
        values["step"] = last
    return values


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="a prepared data folder (reenact prepare-data)")
    p.add_argument("--runs", type=Path, default=Path("runs/ablation"), help="run folders (default: runs/ablation)")
    p.add_argument("--parallel", type=int, default=2, help="runs at a time (each on one thread)")
    p.add_argument("--frames", type=int, default=16, help="evaluation frames per test clip, evenly spaced")
    p.add_argument("--only", nargs="*", default=None, help="subset of " + " ".join(RUNS))
    p.add_argument("--json", type=Path, default=RESULT)
    args = p.parse_args()
    # Recorded as given (relative paths stay relative); resolved because the runs start in the repo root.
    data_as_given, runs_as_given = args.data, args.runs
    args.data, args.runs = args.data.resolve(), args.runs.resolve()
    if not (args.data / "train").is_dir() or not (args.data / "test").is_dir():
        raise SystemExit(f"{args.data} is not a prepared data folder (no train/ and test/): "
                         "make one with `reenact prepare-data CLIPS -o DATA`")
    args.runs.mkdir(parents=True, exist_ok=True)
    evalset = build_evalset(args.data, args.runs / "evalset", args.frames)
    names = [n for n in RUNS if args.only is None or n in args.only]
    queue, results, errors = list(names), {}, []
    lock = threading.Lock()
    started = time.time()

    def log(msg: str) -> None:
        print(time.strftime("%H:%M:%S"), msg, flush=True)

    def worker() -> None:
        while True:
            with lock:
                if not queue:
                    return
                name = queue.pop(0)
            try:
                results[name] = job(name, args, evalset, log)
            except Exception as exc:  # keep the other runs going
                errors.append(str(exc))
                log(str(exc))

    threads = [threading.Thread(target=worker) for _ in range(max(1, args.parallel))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu = cpu_name()
    out = {
        "study": "ablation", "data": str(data_as_given), "evalset": str(runs_as_given / "evalset"),
        "frames_per_clip": args.frames,
        "hardware": f"{cpu}, {os.cpu_count()} cores (shared with other jobs), 1 torch thread per run, {args.parallel} runs at a time",
        "wall_s": round(time.time() - started, 1),
        "runs": [results[n] for n in names if n in results], "errors": errors,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    log(f"wrote {args.json}")
    return 1 if errors else 0




def markdown(path: Path) -> str:
    """The docs/training-results.md table from the result JSON: `python -m experiments.ablation --table`."""
    data = json.loads(path.read_text())
    runs = {r["run"]: r for r in data["runs"]}
    lines = ["| run | L1 | AKD (px@256) | AED | MKR | val motion err | train wall (min) | eval wall (min) |",
             "|---|---|---|---|---|---|---|---|"]
    for name in RUNS:
        if name not in runs:
            continue
        r, m = runs[name], runs[name]["model"]
        mkr = "n/a" if m["mkr"] is None else f"{m['mkr']:.3f}"
        ev = "" if r.get("eval_wall_s") is None else f"{r['eval_wall_s'] / 60:.1f}"
        vm = r.get("trainer_validation", {}).get("val_motion")
        vm = "" if vm is None else f"{vm:.4f}"
        lines.append(f"| {r['label']} (`{name}`) | {m['l1']:.4f} | {m['akd']:.2f} | {m['aed']:.4f} | {mkr} | {vm} | "
                     f"{r['train_wall_s'] / 60:.1f} | {ev} |")
    s = next(iter(runs.values()))["static_baseline"]
    lines.append(f"| static baseline (output = source) | {s['l1']:.4f} | {s['akd']:.2f} | {s['aed']:.4f} | "
                 f"{'n/a' if s['mkr'] is None else format(s['mkr'], '.3f')} | - | - | - |")
    out = ["\n".join(lines), ""]
    pairs = [("fomm", "fomm-seed1"), ("fomm", "fomm-seed2"), ("paper", "paper-seed1"), ("paper", "paper-seed2"),
             ("fomm", "paper"), ("fomm-seed1", "paper-seed1"), ("fomm-seed2", "paper-seed2"),
             ("fomm", "fomm-cbam"), ("fomm", "fomm-paperatt"), ("fomm-cbam", "fomm-cbam-msocc")]
    for a, b in pairs:
        if a in runs and b in runs:
            ma, mb = runs[a]["model"], runs[b]["model"]
            clips = sorted(set(runs[a]["clips"]) & set(runs[b]["clips"]))
            wins = sum(runs[b]["clips"][c]["akd"] < runs[a]["clips"][c]["akd"] for c in clips)
            out.append(f"- {b} - {a}: L1 {mb['l1'] - ma['l1']:+.4f}, AKD {mb['akd'] - ma['akd']:+.2f}, "
                       f"AED {mb['aed'] - ma['aed']:+.4f}; {b} has the lower AKD on {wins}/{len(clips)} clips")
    return "\n".join(out)


if __name__ == "__main__":
    if "--table" in sys.argv:
        print(markdown(RESULT))
        raise SystemExit(0)
    raise SystemExit(main())
