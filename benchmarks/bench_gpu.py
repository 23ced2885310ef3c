"""GPU benchmark of the CUDA-graph engine: model-only speed at 256 px, batch 1, and its parity with fp32.

Self-contained for a GPU machine with only torch, numpy, OpenCV, PyYAML and safetensors (no mediapipe, no
ONNX Runtime, no network): run from the repository root,

    python3 -m benchmarks.bench_gpu                       # on the GPU; JSON to benchmarks/results/ (and $OUT)
    python3 -m benchmarks.bench_gpu --device cpu --dry-run   # every step, tiny counts, on a CPU

Speed: per preset (random weights: speed does not depend on them), each timed frame runs every engine
once, round-robin (a clock or load change hits them alike): the current PyTorch CUDA fp16 engine (the
same-run baseline), the fp32 PyTorch engine, and the CUDA-graph engine in fp16 (and bf16, and with
torch.compile reduce-overhead when asked). A frame is the app's per-frame model work through the engine
API: detect_keypoints on a uint8 crop, then animate, the uint8 image back in host memory.
Process CPU time per frame is kept too: where it equals the wall time the GPU waits for the CPU.

Parity: the bundled trained weights on the bundled driving clip (real frames), each engine's output vs
the fp32 PyTorch engine, as mean and max |difference| in grey levels (0-255).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parent.parent

log = logging.getLogger("bench_gpu")

PRESETS = ("paper-rt", "fomm-vox256", "paper-vox256")
TARGET_FPS = {"paper-rt": 1000.0, "fomm-vox256": 400.0, "paper-vox256": 400.0}
BASELINE = "torch-cuda-fp16"
DRIVING = REPO / "assets" / "driving" / "demo.mp4"
AVATAR = REPO / "assets" / "avatars" / "monalisa.jpg"


# -- inputs ------------------------------------------------------------------------------------------
def real_frames(count: int, size: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """(avatar, driving frames): uint8 RGB centre crops of the bundled portrait and driving clip."""
    import cv2

    from reenact_common.video_io import centre_crop, read_frames

    avatar_bgr = cv2.imread(str(AVATAR), cv2.IMREAD_COLOR)
    if avatar_bgr is None:
        raise SystemExit(f"can't read {AVATAR.relative_to(REPO)}: run from a full checkout of the repository")
    avatar = centre_crop(cv2.cvtColor(avatar_bgr, cv2.COLOR_BGR2RGB), size)
    return avatar, [centre_crop(f, size) for f in read_frames(DRIVING, count)]


def hardware(device: str) -> dict:
    import torch

    from reenact_app.benchmarking import cpu_name

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "cpu": cpu_name(), "device": device}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count,
                    cudnn=torch.backends.cudnn.version())
    return info


# -- engines -----------------------------------------------------------------------------------------
def engine_factories(device: str, dry_run: bool, compile_too: bool) -> dict[str, Callable]:
    """name -> model -> engine. On a CPU (dry run) the graph engines run their static buffers eagerly."""
    from reenact_app.engines.cuda_graph_engine import CudaGraphEngine, GraphOptions
    from reenact_app.engines.torch_engine import TorchEngine

    cuda = device.startswith("cuda")
    mode = "cudagraph" if cuda else "eager"
    warmup = 1 if dry_run else 3
    factories: dict[str, Callable] = {
        BASELINE: lambda m: TorchEngine(m, device=device, half=cuda),  # the current GPU engine: fp16 on CUDA
        "torch-cuda-fp32": lambda m: TorchEngine(m, device=device, half=False),
        "cudagraph-fp16": lambda m: CudaGraphEngine(m, GraphOptions(device=device, mode=mode, warmup=warmup,
                                                                     dtype="float16" if cuda else "float32")),
        "cudagraph-bf16": lambda m: CudaGraphEngine(m, GraphOptions(device=device, mode=mode, warmup=warmup,
                                                                     dtype="bfloat16" if cuda else "float32")),
    }
    if compile_too:
        factories["compile-reduce-overhead-fp16"] = lambda m: CudaGraphEngine(
            m, GraphOptions(device=device, mode="compile" if cuda else "eager", warmup=warmup,
                            dtype="float16" if cuda else "float32"))
    return factories


def build_all(factories: dict[str, Callable], model) -> tuple[dict, dict[str, str]]:
    """Build every engine; one that fails (a capture error, say) is reported, not fatal."""
    engines, errors = {}, {}
    for name, factory in factories.items():
        t = time.perf_counter()
        try:
            engines[name] = factory(model)
            log.info("  built %s in %.1f s: %s", name, time.perf_counter() - t, engines[name].describe())
        except Exception as exc:  # noqa: BLE001 - the report says what failed and the others still run
            errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log.error("  %s failed to build: %s", name, errors[name])
            traceback.print_exc()
    return engines, errors


# -- speed -------------------------------------------------------------------------------------------
def stats(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000.0
    return {"median_ms": float(np.median(ms)), "p90_ms": float(np.percentile(ms, 90)), "min_ms": float(ms.min()),
            "n": int(ms.size)}


def time_preset(preset: str, factories: dict, frames: list[np.ndarray], avatar: np.ndarray,
                count: int, warmup: int) -> dict:
    import torch

    from models import build_model

    torch.manual_seed(0)
    model = build_model(preset).eval()
    engines, errors = build_all(factories, model)
    states = {name: engine.encode_source(avatar) for name, engine in engines.items()}
    times: dict[str, dict[str, list[float]]] = {n: {"kp": [], "animate": [], "frame": [], "frame_cpu": []}
                                                for n in engines}
    for i in range(warmup + count):
        frame = frames[i % len(frames)]
        for name, engine in engines.items():  # round-robin: every engine once per frame
            c0, t0 = time.process_time(), time.perf_counter()
            kp = engine.detect_keypoints(frame)
            t1 = time.perf_counter()
            engine.animate(states[name], kp)  # uint8 image in host memory: the call has synchronised
            t2, c2 = time.perf_counter(), time.process_time()
            if i >= warmup:
                for key, value in (("kp", t1 - t0), ("animate", t2 - t1), ("frame", t2 - t0), ("frame_cpu", c2 - c0)):
                    times[name][key].append(value)
    rows = {}
    for name, parts in times.items():
        row = {part: stats(values) for part, values in parts.items()}
        row["fps"] = 1000.0 / row["frame"]["median_ms"]
        row["description"] = engines[name].describe()
        rows[name] = row
    if BASELINE in rows:
        for row in rows.values():
            row["speedup_vs_torch_cuda_fp16"] = rows[BASELINE]["frame"]["median_ms"] / row["frame"]["median_ms"]
    best = max((row["fps"] for name, row in rows.items() if name.startswith(("cudagraph", "compile"))), default=0.0)
    for engine in engines.values():
        engine.close()
    return {"engines": rows, "errors": errors, "best_graph_fps": best, "target_fps": TARGET_FPS.get(preset),
            "target_met": best >= TARGET_FPS.get(preset, float("inf"))}


# -- parity ------------------------------------------------------------------------------------------
def parity(factories: dict, device: str, frames: list[np.ndarray], avatar: np.ndarray) -> dict:
    """Each engine vs the fp32 PyTorch engine, trained weights, real frames (absolute keypoints)."""
    from models import load_checkpoint
    from reenact_app.engines.torch_engine import TorchEngine

    model = load_checkpoint(None)
    reference_engine = TorchEngine(model, device=device, half=False)
    reference_state = reference_engine.encode_source(avatar)
    kps = [reference_engine.detect_keypoints(f) for f in frames]
    reference = [reference_engine.animate(reference_state, kp) for kp in kps]
    engines, errors = build_all({n: f for n, f in factories.items() if n != "torch-cuda-fp32"}, model)
    report: dict = {"weights": f"bundled ({(model.metadata or {}).get('preset', 'default weights')})",
                    "frames": len(frames), "reference": "PyTorch fp32, same device", "errors": errors, "engines": {}}
    for name, engine in engines.items():
        state = engine.encode_source(avatar)
        # The same driving keypoints for every engine isolates animate; own keypoints measure the whole path.
        same_kp = [engine.animate(state, kp) for kp in kps]
        own_kp = [engine.animate(state, engine.detect_keypoints(f)) for f in frames]
        kp_diff = max(float(np.abs(engine.detect_keypoints(f).value - kp.value).max()) for f, kp in zip(frames, kps))
        report["engines"][name] = {
            "animate_only": _diff(same_kp, reference),
            "whole_frame": _diff(own_kp, reference),
            "keypoint_max_abs_diff": kp_diff,
        }
        engine.close()
    return report


def _diff(outputs: list[np.ndarray], reference: list[np.ndarray]) -> dict:
    diffs = [np.abs(a.astype(np.int16) - b.astype(np.int16)) for a, b in zip(outputs, reference)]
    return {"mean_grey_levels": float(np.mean([d.mean() for d in diffs])),
            "max_grey_levels": int(max(d.max() for d in diffs)),
            "p99_grey_levels": float(np.percentile(np.concatenate([d.ravel() for d in diffs]), 99))}


# -- report ------------------------------------------------------------------------------------------
def table(report: dict) -> str:
    lines = ["| preset | engine | runs as | kp ms | animate ms | frame ms (median / p90) | CPU ms/frame | fps | "
             "vs PyTorch CUDA fp16 |", "|---|---|---|---|---|---|---|---|---|"]
    for preset, result in report["speed"].items():
        for name, row in result["engines"].items():
            lines.append(
                f"| {preset} | {name} | {row['description']} | {row['kp']['median_ms']:.2f} | {row['animate']['median_ms']:.2f} | "
                f"{row['frame']['median_ms']:.2f} / {row['frame']['p90_ms']:.2f} | {row['frame_cpu']['median_ms']:.2f} | "
                f"{row['fps']:.0f} | {row.get('speedup_vs_torch_cuda_fp16', float('nan')):.2f}x |")
        for name, error in result["errors"].items():
            lines.append(f"| {preset} | {name} | failed: {error} | | | | | | |")
    lines.append("")
    lines.append("| parity vs fp32 (grey levels) | animate only: mean / p99 / max | whole frame: mean / p99 / max | kp max |diff| |")
    lines.append("|---|---|---|---|")
    for name, row in report.get("parity", {}).get("engines", {}).items():
        a, w = row["animate_only"], row["whole_frame"]
        lines.append(f"| {name} | {a['mean_grey_levels']:.3f} / {a['p99_grey_levels']:.0f} / {a['max_grey_levels']} | "
                     f"{w['mean_grey_levels']:.3f} / {w['p99_grey_levels']:.0f} / {w['max_grey_levels']} | "
                     f"{row['keypoint_max_abs_diff']:.2e} |")
    return "\n".join(lines)


def output_paths(args, info: dict) -> list[Path]:
    if args.out:
        return [Path(args.out)]
    if args.dry_run:
        return [Path(os.environ.get("TMPDIR", "/tmp")) / "bench-gpu-dry-run.json"]
    slug = "".join(c if c.isalnum() else "-" for c in info.get("gpu", info["device"]).lower()).strip("-")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M")
    paths = [REPO / "benchmarks" / "results" / f"engines-gpu-cudagraph-{slug}-{stamp}.json"]
    if os.environ.get("OUT"):  # the lent GPU machine returns files written here
        paths.append(Path(os.environ["OUT"]) / paths[0].name)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda:0", help="cuda:N, or cpu with --dry-run")
    parser.add_argument("--dry-run", action="store_true", help="tiny counts: check that every step runs")
    parser.add_argument("--frames", type=int, default=300, help="timed frames per engine and preset")
    parser.add_argument("--warmup", type=int, default=20, help="untimed frames per engine first")
    parser.add_argument("--parity-frames", type=int, default=40, help="real frames for the parity check")
    parser.add_argument("--preset", action="append", help=f"repeatable; default {', '.join(PRESETS)}")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile(mode='reduce-overhead')")
    parser.add_argument("--out", help="write the JSON here (default benchmarks/results/, and $OUT when set)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"no CUDA GPU visible to torch {torch.__version__}; use --device cpu --dry-run to check the script",
              file=sys.stderr)
        return 2
    if not args.device.startswith("cuda") and not args.dry_run:
        print("timing on a CPU is not what this script is for: add --dry-run (or use `reenact bench`)", file=sys.stderr)
        return 2
    if args.dry_run:
        args.frames, args.warmup, args.parity_frames = min(args.frames, 2), min(args.warmup, 1), min(args.parity_frames, 3)
    torch.backends.cuda.matmul.allow_tf32 = False  # parity against true fp32
    torch.backends.cudnn.allow_tf32 = False
    info = hardware(args.device)
    log.info("hardware: %s", info)
    factories = engine_factories(args.device, args.dry_run, args.compile)
    avatar, frames = real_frames(max(args.parity_frames, 16), 256)
    report: dict = {"kind": "gpu-cudagraph", "hardware": info, "dry_run": args.dry_run, "frames": args.frames,
                    "warmup": args.warmup, "batch": 1, "image_size": 256,
                    "baseline": f"{BASELINE} (the PyTorch CUDA engine before CUDA graphs), same run, interleaved",
                    "speed": {}}
    for preset in args.preset or PRESETS:
        log.info("timing %s", preset)
        report["speed"][preset] = time_preset(preset, factories, frames[:16], avatar, args.frames, args.warmup)
    log.info("parity on %d real frames", args.parity_frames)
    report["parity"] = parity(factories, args.device, frames[: args.parity_frames], avatar)
    text = table(report)
    print(text)
    for path in output_paths(args, info):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
        path.with_suffix(".md").write_text(text + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
