"""ONNX Runtime CPU tuning sweep on the per-frame graphs (kp detector + animate), interleaved rounds.

    python -m benchmarks.ort_tuning [--presets paper-rt fomm-vox256] [--rounds 8]

Variants: graph optimisation level, intra-op threads, thread spinning, memory arena. Writes
benchmarks/results/ort-tuning-<date>.json; numbers are summarised in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from reenact_app.benchmarking import bench_frames, bench_model, hardware
from reenact_app.engines.onnx_engine import OnnxRuntimeEngine, OrtOptions, default_cache_dir, ensure_export

VARIANTS = {
    "default (all, 2 thr, no spin, arena)": OrtOptions(),
    "opt disable": OrtOptions(graph_optimization="disable"),
    "opt basic": OrtOptions(graph_optimization="basic"),
    "opt extended": OrtOptions(graph_optimization="extended"),
    "1 thread": OrtOptions(intra_op_threads=1),
    "keypoints 1 thread, animate 2": OrtOptions(keypoint_threads=1),
    "spinning": OrtOptions(allow_spinning=True),
    "1 thread, spinning": OrtOptions(intra_op_threads=1, allow_spinning=True),
    "no arena": OrtOptions(cpu_mem_arena=False),
}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", nargs="+", default=["paper-rt", "fomm-vox256"])
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    report = {"hardware": hardware(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "results": {}}
    for preset in args.presets:
        model = bench_model(preset, None)
        folder = ensure_export(model, default_cache_dir())
        frames = bench_frames(None, model.config.image_size, 4)
        engines = {name: OnnxRuntimeEngine(folder, opts) for name, opts in VARIANTS.items()}
        states = {name: e.encode_source(frames[0]) for name, e in engines.items()}
        times = {name: [] for name in engines}
        for r in range(args.rounds + 1):
            for name, engine in engines.items():
                t = time.perf_counter()
                engine.animate(states[name], engine.detect_keypoints(frames[1 + r % 3]))
                if r:  # round 0 is warm-up
                    times[name].append(time.perf_counter() - t)
        base = np.median(times["default (all, 2 thr, no spin, arena)"])
        report["results"][preset] = {}
        print(f"\n{preset}: kp + animate per frame, median of {args.rounds} interleaved rounds")
        for name, values in times.items():
            med = float(np.median(values) * 1000)
            report["results"][preset][name] = {"median_ms": med, "p90_ms": float(np.percentile(values, 90) * 1000),
                                               "relative_to_default": float(np.median(values) / base)}
            print(f"  {name:36s} {med:8.1f} ms  x{np.median(values) / base:.2f}")
    print(f"\n{report['hardware']['cpu']}, load average at start {os.getloadavg()}")
    out = Path(__file__).parent / "results" / f"ort-tuning-{time.strftime('%Y%m%d-%H%M')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
