"""`reenact bench`: per-part latency, fps and peak memory of each engine, with the eager baseline."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark inference engines (per-part ms, fps, peak RSS) against the eager baseline",
        description="Times keypoint detection, animate and the whole frame (median and p90) for each engine, "
        "interleaved with the eager fp32 full-recompute baseline of the same run, and measures each engine's "
        "peak RSS in a fresh process. Random weights unless --checkpoint is given (speed does not depend on them).",
    )
    p.add_argument("--preset", action="append", help="model preset (repeatable; default paper-rt)")
    p.add_argument("--engine", action="append",
                   help="engine (repeatable): torch-cpu, onnxruntime-cpu, onnxruntime-int8, torch-cuda, "
                   "torch-cudagraph, onnxruntime-cuda, tensorrt; default: the CPU ones, and where CUDA is "
                   "present PyTorch CUDA graphs and PyTorch CUDA first")
    p.add_argument("--frames", type=int, default=20, help="timed frames per engine")
    p.add_argument("--checkpoint", help="benchmark these weights (uses their own config)")
    p.add_argument("--video", help="driving video for real frames (default: synthetic frames)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all available)")
    p.add_argument("--no-baseline", action="store_true", help="skip the eager full-recompute baseline")
    p.add_argument("--baseline-device", default="cpu", choices=("cpu", "cuda"),
                   help="where the eager fp32 baseline runs (cuda: compare GPU engines against the GPU)")
    p.add_argument("--no-memory", action="store_true", help="skip the per-engine peak-RSS subprocesses")
    p.add_argument("--json", help="write the full report as JSON here")
    p.set_defaults(func=run)


def default_engines() -> tuple[str, ...]:
    """The CPU engines; where CUDA is present, the CUDA-graph engine and plain PyTorch CUDA before them."""
    from reenact_app.benchmarking import BenchConfig
    from reenact_app.engines.select import cuda_status

    gpu = ("torch-cudagraph", "torch-cuda") if cuda_status()[0] else ()
    return gpu + BenchConfig.engines


def run(args: argparse.Namespace) -> int:
    from reenact_app.benchmarking import BenchConfig, format_table, run_benchmark, write_json
    from reenact_common.video_io import check_writable

    if args.json:
        check_writable(args.json, suffix=None, create_folder=True)  # before minutes of benchmarking
    presets = tuple(args.preset or ["paper-rt"])
    if args.checkpoint and len(presets) > 1:
        from reenact_common.errors import ConfigError

        raise ConfigError("--checkpoint benchmarks one model: give at most one --preset (it is only a label)")
    config = BenchConfig(
        presets=presets,
        engines=tuple(args.engine or default_engines()),
        frames=args.frames,
        checkpoint=args.checkpoint,
        video=args.video,
        threads=args.threads,
        baseline=not args.no_baseline,
        baseline_device=args.baseline_device,
        memory=not args.no_memory,
    )
    report = run_benchmark(config, progress=lambda msg: log.info(msg))
    print(format_table(report))
    if args.json:
        print(f"wrote {write_json(report, args.json)}")
    return 0
