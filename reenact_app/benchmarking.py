"""Engine benchmark: per-part latency (median, p90), fps and peak RSS for each engine and preset, plus the
eager fp32 full-recompute baseline of the same run.

Why interleaved: on a shared 2-core machine the load changes by the second, so each iteration times
every engine once, round-robin; a load spike then hits all engines alike and the ratios stay fair.
Peak RSS is a per-process high-water mark, so it is measured in a fresh subprocess per (preset, engine).
`frame_cpu` is the process CPU time per frame: far less sensitive to other processes than wall time
(with one thread and no spinning it approximates the wall time on an idle core).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

BASELINE = "eager-full"


@dataclass(frozen=True)
class BenchConfig:
    presets: tuple[str, ...] = ("paper-rt",)
    engines: tuple[str, ...] = ("torch-cpu", "onnxruntime-cpu", "onnxruntime-int8")
    frames: int = 20
    warmup: int = 2
    checkpoint: str | None = None  # benchmark these weights instead of random ones (one preset then)
    video: str | None = None  # real driving frames (speed barely depends on content)
    threads: int = 0
    baseline: bool = True
    baseline_device: str = "cpu"  # "cuda": the eager fp32 baseline on the GPU, to compare GPU engines fairly
    memory: bool = True
    cache_dir: str | None = None


@dataclass
class PartStats:
    median_ms: float
    p90_ms: float
    n: int
    min_ms: float = 0.0  # best case: the closest a loaded machine gets to an idle one

    @classmethod
    def of(cls, seconds: list[float]) -> "PartStats":
        ms = np.asarray(seconds) * 1000.0
        return cls(float(np.median(ms)), float(np.percentile(ms, 90)), len(ms), float(ms.min()))


@dataclass
class EngineResult:
    preset: str
    engine: str
    description: str = ""
    parts: dict[str, PartStats] = field(default_factory=dict)
    fps: float = 0.0
    speedup_vs_baseline: float | None = None  # wall time
    speedup_cpu_vs_baseline: float | None = None  # CPU time (robust to other processes' load)
    peak_rss_mb: float | None = None
    parity: dict | None = None  # ONNX engines: max/mean |diff| of the prediction vs PyTorch, real frames
    error: str | None = None


def cpu_name() -> str:
    """The CPU model as lscpu names it (platform.processor() where lscpu is missing)."""
    cpu = platform.processor()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def hardware() -> dict:
    import onnxruntime
    import torch

    info = {
        "cpu": cpu_name(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        info["load_average_at_start"] = os.getloadavg()
    except OSError:  # pragma: no cover
        pass
    return info


def bench_frames(video: str | None, size: int, count: int = 16) -> list[np.ndarray]:
    if video:
        from reenact_common.video_io import centre_crop, iter_frames

        return [centre_crop(f, size) for f in iter_frames(video, count)]
    rng = np.random.default_rng(0)
    return [(rng.random((size, size, 3)) * 255).astype(np.uint8) for _ in range(count)]


def bench_model(preset: str, checkpoint: str | None):
    """The model a benchmark times: the checkpoint's, or the preset's with seeded random weights (speed only)."""
    import torch

    from models import build_model, load_checkpoint

    if checkpoint:
        return load_checkpoint(checkpoint)
    torch.manual_seed(0)
    return build_model(preset).eval()


class EngineRunner:
    """Times one engine's parts through the app's session; `step(frame)` does one driving frame (public:
    other benchmarks time engine variants with it)."""

    def __init__(self, name: str, engine, avatar: np.ndarray):
        from reenact_app.session import AnimationSession, MotionSettings

        self.name, self.engine, self.avatar = name, engine, avatar
        self.session = AnimationSession(engine, MotionSettings(relative=True, adapt_scale=True))
        self.times: dict[str, list[float]] = {"encode_source": [], "kp_detector": [], "animate": [], "frame": [],
                                              "frame_cpu": []}
        self.session.set_avatar(avatar)

    def encode(self) -> None:
        t = time.perf_counter()
        self.session.set_avatar(self.avatar)
        self.times["encode_source"].append(time.perf_counter() - t)

    def step(self, frame: np.ndarray, record: bool = True) -> None:
        c0, t0 = time.process_time(), time.perf_counter()
        kp = self.session.driving_keypoints(frame)  # detection + relative motion (numpy)
        t1 = time.perf_counter()
        self.engine.animate(self.session.source, kp)
        t2, c2 = time.perf_counter(), time.process_time()
        if record:
            self.times["kp_detector"].append(t1 - t0)
            self.times["animate"].append(t2 - t1)
            self.times["frame"].append(t2 - t0)
            self.times["frame_cpu"].append(c2 - c0)


class _Baseline:
    """FOMM-demo style per frame, eager fp32: both keypoint detections, relative motion with the scale
    recomputed, and the full generator (source encoder included)."""

    name = BASELINE

    def __init__(self, model, avatar: np.ndarray, device: str = "cpu"):
        import torch

        from reenact_app.engines.torch_engine import to_tensor

        self.device = torch.device(device)
        if self.device.type != "cpu":  # a copy: the caller's CPU model still feeds the other engines' exports
            import copy

            model = copy.deepcopy(model)
        self.torch, self.model = torch, model.eval().to(self.device, torch.float32)
        self.source = to_tensor(avatar, self.device, torch.float32)
        self.to_tensor = to_tensor
        self.initial = None
        self.times: dict[str, list[float]] = {"frame": [], "frame_cpu": []}

    def step(self, frame: np.ndarray, record: bool = True) -> None:
        from models import normalize_kp

        torch = self.torch
        c0, t0 = time.process_time(), time.perf_counter()
        with torch.inference_mode():
            driving = self.to_tensor(frame, self.device, torch.float32)
            kp_source = self.model.kp_detector(self.source)
            kp_driving = self.model.kp_detector(driving)
            if self.initial is None:
                self.initial = kp_driving
            kp_norm = normalize_kp(kp_source, kp_driving, self.initial, adapt_movement_scale=True,
                                   use_relative_movement=True, use_relative_jacobian=True)
            prediction = self.model.generator(self.source, kp_norm, kp_source)["prediction"]
            prediction.mul(255).byte().cpu()  # the frame back in host memory, as every engine returns it
        if record:
            self.times["frame"].append(time.perf_counter() - t0)
            self.times["frame_cpu"].append(time.process_time() - c0)


EagerBaseline = _Baseline  # public name: other benchmarks time the upstream-style baseline too


def _prepare_onnx(model, options, frames: list[np.ndarray], int8: bool) -> None:
    """Export once (cached) and calibrate int8 on the benchmark's real frames, not synthetic ones."""
    from export.onnx_export import read_manifest
    from export.quantize import quantize_export
    from reenact_app.engines.onnx_engine import default_cache_dir, ensure_export

    folder = ensure_export(model, Path(options.cache_dir) if options.cache_dir else default_cache_dir())
    if int8 and "animate_int8" not in read_manifest(folder).files:
        quantize_export(folder, frames[:8])


def _parity(model, options, frames: list[np.ndarray], int8: bool) -> dict:
    from export.parity import check_parity
    from reenact_app.engines.onnx_engine import default_cache_dir, ensure_export

    folder = ensure_export(model, Path(options.cache_dir) if options.cache_dir else default_cache_dir())
    report = check_parity(model, folder, frames[:5], tolerance=1e-3, int8=int8)
    return {"max_abs_prediction": report.max_abs_prediction, "mean_abs_prediction": report.mean_abs_prediction,
            "max_abs_keypoints": report.max_abs_keypoints, "frames": report.frames, "within_1e-3": report.ok,
            "prediction_range": report.prediction_range, "relative_to_range": report.relative_to_range}


def _rss_probe(preset: str, engine: str, config: BenchConfig) -> float | None:
    """Peak RSS (MB) of a fresh process that loads the model, builds the engine and runs 5 frames."""
    cmd = [sys.executable, "-m", "reenact_app.benchmarking", "--rss-probe", preset, engine]
    if config.checkpoint:
        cmd += ["--checkpoint", config.checkpoint]
    if config.cache_dir:
        cmd += ["--cache-dir", config.cache_dir]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=True).stdout
        return float(out.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        log.warning("peak RSS probe for %s/%s failed: %s", preset, engine, exc)
        return None


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not getrusage: ru_maxrss survives fork+exec, so a subprocess
    of a big parent would report the parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _probe_main(preset: str, engine_name: str, checkpoint: str | None, cache_dir: str | None) -> None:
    model = bench_model(preset, checkpoint)
    frames = bench_frames(None, model.config.image_size, 6)
    if engine_name == BASELINE:
        runner = _Baseline(model, frames[0])
    else:
        from reenact_app.engines.select import EngineOptions, create_engine

        engine = create_engine(model, engine_name, options=EngineOptions(cache_dir=cache_dir, runtime_fallback=False))
        del model
        runner = EngineRunner(engine_name, engine, frames[0])
    for frame in frames[1:]:
        runner.step(frame)
    print(peak_rss_mb())


def run_benchmark(config: BenchConfig, progress: Callable[[str], None] | None = None) -> dict:
    """Runs the benchmark; returns the JSON-serialisable report."""
    from reenact_app.engines.select import EngineOptions, create_engine

    say = progress or log.info
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    report = {"hardware": hardware(), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "config": asdict(config), "results": []}
    for preset in config.presets:
        model = bench_model(preset, config.checkpoint)
        label = preset if not config.checkpoint else f"{preset} ({Path(config.checkpoint).name})"
        frames = bench_frames(config.video, model.config.image_size, 16)
        avatar, driving = frames[0], frames[1:]
        runners: list = []
        results: dict[str, EngineResult] = {}
        if config.baseline:
            runners.append(_Baseline(model, avatar, config.baseline_device))
            results[BASELINE] = EngineResult(
                label, BASELINE, f"PyTorch {config.baseline_device} fp32 eager, full recompute per frame")
        options = EngineOptions(threads=config.threads, cache_dir=config.cache_dir, runtime_fallback=False)
        if any(name.startswith("onnxruntime") for name in config.engines):
            _prepare_onnx(model, options, frames, "onnxruntime-int8" in config.engines)
        for name in config.engines:
            say(f"[{label}] building {name}")
            try:
                engine = create_engine(model, name, options=options)
                runners.append(EngineRunner(name, engine, avatar))
                results[name] = EngineResult(label, name, engine.describe())
            except Exception as exc:
                log.warning("engine %s unavailable for %s: %s", name, preset, exc)
                results[name] = EngineResult(label, name, error=str(exc).splitlines()[0])
        for runner in runners:
            for i in range(config.warmup):
                runner.step(driving[i % len(driving)], record=False)
        say(f"[{label}] timing {config.frames} frames x {len(runners)} engines (interleaved)")
        for i in range(config.frames):
            for runner in runners:
                runner.step(driving[i % len(driving)])
            if i % 3 == 0:
                for runner in runners:
                    if isinstance(runner, EngineRunner):
                        runner.encode()
        for runner in runners:
            result = results[runner.name]
            result.parts = {k: PartStats.of(v) for k, v in runner.times.items() if v}
            result.fps = 1000.0 / result.parts["frame"].median_ms
        if BASELINE in results:
            base = results[BASELINE].parts["frame"].median_ms
            base_cpu = results[BASELINE].parts["frame_cpu"].median_ms
            for result in results.values():
                if result.parts:
                    result.speedup_vs_baseline = base / result.parts["frame"].median_ms
                    result.speedup_cpu_vs_baseline = base_cpu / max(result.parts["frame_cpu"].median_ms, 1e-6)
        for runner in runners:
            if hasattr(runner, "engine"):
                runner.engine.close()
        for name in ("onnxruntime-cpu", "onnxruntime-int8"):
            if name in results and results[name].error is None:
                results[name].parity = _parity(model, options, frames, name == "onnxruntime-int8")
        del runners, model
        if config.memory:
            for name, result in results.items():
                if result.error is None:
                    say(f"[{label}] peak RSS probe {name}")
                    result.peak_rss_mb = _rss_probe(preset, name, config)
        report["results"].extend(_jsonable(r) for r in results.values())
    return report


def _jsonable(result: EngineResult) -> dict:
    data = asdict(result)
    return data


def format_table(report: dict) -> str:
    head = (f"| preset | engine | kp ms (med/p90) | animate ms (med/p90) | frame ms (med/p90) | frame CPU ms | fps | "
            f"vs baseline (wall / CPU) | encode_source ms | peak RSS MB | parity max abs |")
    lines = [head, "|" + "---|" * 11]
    for r in report["results"]:
        if r["error"]:
            lines.append(f"| {r['preset']} | {r['engine']} | unavailable: {r['error']} |||||||||")
            continue
        p = r["parts"]

        def cell(name: str) -> str:
            return f"{p[name]['median_ms']:.1f} / {p[name]['p90_ms']:.1f}" if name in p else "-"

        speed = (f"{r['speedup_vs_baseline']:.2f}x / {r['speedup_cpu_vs_baseline']:.2f}x"
                 if r["speedup_vs_baseline"] else "-")
        rss = f"{r['peak_rss_mb']:.0f}" if r["peak_rss_mb"] else "-"
        if r.get("parity"):
            rss += f" | {r['parity']['max_abs_prediction']:.1e} ({100 * r['parity']['relative_to_range']:.2g}% of range)"
        else:
            rss += " | -"
        enc = f"{p['encode_source']['median_ms']:.1f}" if "encode_source" in p else "(per frame)"
        lines.append(f"| {r['preset']} | {r['engine']} | {cell('kp_detector')} | {cell('animate')} | "
                     f"{cell('frame')} | {p['frame_cpu']['median_ms']:.1f} | {r['fps']:.1f} | {speed} | {enc} | {rss} |")
    hw = report["hardware"]
    lines.append(f"\n{hw['cpu']}, {hw['cores_available']} cores available, torch {hw['torch']}, "
                 f"onnxruntime {hw['onnxruntime']}, GPU: {hw['gpu'] or 'none'}; {report['date']}")
    return "\n".join(lines)


def write_json(report: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    return path


if __name__ == "__main__":  # the peak-RSS probe subprocess
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--rss-probe", nargs=2, metavar=("PRESET", "ENGINE"), required=True)
    parser.add_argument("--checkpoint")
    parser.add_argument("--cache-dir")
    ns = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    _probe_main(ns.rss_probe[0], ns.rss_probe[1], ns.checkpoint, ns.cache_dir)
