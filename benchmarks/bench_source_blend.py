"""What the warped-source blend costs per frame: the same weights with the blend off and on, interleaved.

    python -m benchmarks.bench_source_blend [--checkpoint FILE] [--frames 60] [--threads 2]

The blend adds a full-resolution warp of the avatar (without it the exporter prunes that warp from the
per-frame graph) and a per-pixel mix; per avatar, one more dense-motion pass (the occlusion map at rest,
timed as `encode_source`: the app's whole avatar step, face crop included). Both variants of each engine run frame by frame in turn, so machine
load hits them alike. Prints a table and writes benchmarks/results/source-blend-speed-<host>-<date>.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import socket
import time
from pathlib import Path

from models import load_checkpoint
from reenact_app.benchmarking import PartStats, EngineRunner, bench_frames, hardware
from reenact_app.engines.select import EngineOptions, create_engine
from reenact_common.scripts import write_report

SHARED_CLIP = Path(__file__).resolve().parent.parent.parent / "shared/data/clips/wyhsirius+LIA/data/vox/driving1.mp4"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="default: the bundled weights")
    parser.add_argument("--engines", nargs="+", default=["onnxruntime-cpu", "torch-cpu"])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--avatar-repeats", type=int, default=10, help="timed avatar encodings per variant")
    parser.add_argument("--out")
    args = parser.parse_args()

    base = load_checkpoint(args.checkpoint)
    models = {"off": copy.deepcopy(base).set_warped_source_blend(False), "on": copy.deepcopy(base).set_warped_source_blend(True)}
    frames = bench_frames(str(SHARED_CLIP) if SHARED_CLIP.is_file() else None, base.config.image_size, 16)
    options = EngineOptions(threads=args.threads, runtime_fallback=False)
    runners = {(engine, variant): EngineRunner(f"{engine}/{variant}", create_engine(model, engine, options=options), frames[0])
               for engine in args.engines for variant, model in models.items()}
    for runner in runners.values():
        for frame in frames[1:4]:
            runner.step(frame, record=False)
    for i in range(args.frames):
        for runner in runners.values():
            runner.step(frames[1 + i % (len(frames) - 1)])
    for _ in range(args.avatar_repeats):  # the avatar side (with the blend: one more dense-motion pass)
        for runner in runners.values():
            runner.encode()

    rows = []
    for engine in args.engines:
        stats = {v: {p: PartStats.of(runners[(engine, v)].times[p]) for p in ("animate", "frame", "encode_source")}
                 for v in models}
        rows.append({
            "engine": engine,
            **{f"{v}_{p}_ms": {"median": s.median_ms, "p90": s.p90_ms, "min": s.min_ms}
               for v in models for p, s in stats[v].items()},
            "frame_ratio_on_off": stats["on"]["frame"].median_ms / stats["off"]["frame"].median_ms,
            "fps_off": 1000 / stats["off"]["frame"].median_ms, "fps_on": 1000 / stats["on"]["frame"].median_ms,
        })
    print("| engine | animate ms off / on (median) | frame ms off / on (median) | on/off | fps off / on | "
          "avatar (encode_source) ms off / on |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['engine']} | {r['off_animate_ms']['median']:.1f} / {r['on_animate_ms']['median']:.1f} | "
              f"{r['off_frame_ms']['median']:.1f} / {r['on_frame_ms']['median']:.1f} | {r['frame_ratio_on_off']:.3f} | "
              f"{r['fps_off']:.1f} / {r['fps_on']:.1f} | "
              f"{r['off_encode_source_ms']['median']:.1f} / {r['on_encode_source_ms']['median']:.1f} |")
    report = {"hardware": hardware(), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "checkpoint": args.checkpoint or "bundled", "frames": args.frames,
              "threads": args.threads, "image_size": base.config.image_size, "results": rows}
    out = Path(args.out or Path(__file__).parent / "results" / f"source-blend-speed-{socket.gethostname()}-{time.strftime('%Y%m%d')}.json")
    write_report(out, report, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
