"""End-to-end `reenact animate` per frame, by stage, against upstream FOMM's eager model alone, same run.

Each round runs the upstream-style eager fp32 baseline (model only: both keypoint detections and the full
generator per frame) on the driving clip's centre crops, then the app's offline loop (the code of `reenact
animate`: decode and face-tracker crop in a background thread, keypoints, relative motion, animate,
H.264 encode) once per engine, so a load change hits all of them alike. Stages: decode, crop (face
tracker), keypoints, animate, encode (wall ms per frame; decode and crop overlap inference); plus the
process CPU time per frame, which other processes' load barely changes.

    python -m benchmarks.bench_end_to_end --preset paper-rt                 # bundled weights, default engine
    python -m benchmarks.bench_end_to_end --preset fomm-vox256 --engine auto --engine onnxruntime-int8
    python -m benchmarks.bench_end_to_end --engine torch-cudagraph --engine torch-cuda --baseline-device cuda
    python -m benchmarks.bench_end_to_end --loop serial --loop pipelined/1/1 --loop pipelined/1/2

`--loop LOOP[/KEYPOINT_THREADS/ANIMATE_THREADS]` (repeatable) times the offline loop serial (decode and
crop in a background thread) or pipelined (two stages, reenact_app/drive.py), optionally with the ONNX
Runtime keypoint and animate graphs' intra-op threads (0: every core); every loop runs every engine in
every round, interleaved. Default: the loop `reenact animate` uses, with its thread settings.

Without mediapipe (a bare GPU machine) the crops are centre crops, as `reenact animate` does then; the
report says which.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reenact_app.engines.base import Engine
from reenact_common.scripts import write_report

log = logging.getLogger("bench_end_to_end")

REPO = Path(__file__).resolve().parent.parent
DRIVING = REPO / "assets" / "driving" / "demo.mp4"
AVATAR = REPO / "assets" / "avatars" / "monalisa.jpg"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class TimedEngine(Engine):
    """Passes every call through to `inner`, summing the wall time of keypoints and animate."""

    def __init__(self, inner: Engine):
        self.inner, self.kp_s, self.animate_s = inner, 0.0, 0.0
        self.name, self.device, self.image_size = inner.name, inner.device, inner.image_size

    def describe(self) -> str:
        return self.inner.describe()

    def encode_source(self, image):
        return self.inner.encode_source(image)

    def detect_keypoints(self, image):
        t = time.perf_counter()
        try:
            return self.inner.detect_keypoints(image)
        finally:
            self.kp_s += time.perf_counter() - t

    def animate(self, source, kp_driving):
        t = time.perf_counter()
        try:
            return self.inner.animate(source, kp_driving)
        finally:
            self.animate_s += time.perf_counter() - t

    def close(self) -> None:
        self.inner.close()


@dataclass(frozen=True)
class Loop:
    """One way to run the offline loop: serial or pipelined, and the graphs' intra-op threads."""

    pipelined: bool
    keypoint_threads: int | None = None  # None: what `reenact animate` uses for this loop
    animate_threads: int | None = None  # None: --threads

    @classmethod
    def parse(cls, text: str) -> "Loop":
        name, *threads = text.split("/")
        if name not in ("serial", "pipelined") or len(threads) not in (0, 2) or not all(t.isdigit() for t in threads):
            raise argparse.ArgumentTypeError(f"--loop {text!r}: expected serial or pipelined, optionally "
                                             "followed by /KEYPOINT_THREADS/ANIMATE_THREADS (e.g. pipelined/1/1)")
        kp, an = (int(t) for t in threads) if threads else (None, None)
        return cls(name == "pipelined", kp, an)

    @property
    def label(self) -> str:
        name = "pipelined" if self.pipelined else "serial"
        return name if self.keypoint_threads is None else f"{name}/{self.keypoint_threads}/{self.animate_threads}"


def run_app(model, engine_name: str, frames: int, threads: int, output: Path, loop: Loop | None = None,
            expression: float = 1.0) -> dict:
    """The offline loop of `reenact animate` with default settings (or `loop`'s); ms per frame by stage."""
    from reenact_app.drive import DriveConfig, StageTimes, avatar_landmarks, drive, make_croppers
    from reenact_app.expression import ExpressionSettings
    from reenact_app.engines.select import EngineOptions, create_engine
    from reenact_app.images import load_avatar_image
    from reenact_app.session import AnimationSession, MotionSettings
    from reenact_common.video_io import VideoWriter, iter_frames, probe_video

    config = DriveConfig() if loop is None else DriveConfig.measured(loop.pipelined)
    keypoint_threads = config.keypoint_threads if loop is None or loop.keypoint_threads is None else loop.keypoint_threads
    animate_threads = threads if loop is None or loop.animate_threads is None else loop.animate_threads
    options = EngineOptions(threads=animate_threads, keypoint_threads=keypoint_threads)
    engine = TimedEngine(create_engine(model, engine_name, options=options))
    size = model.config.image_size
    tracker = importlib.util.find_spec("mediapipe") is not None
    if not tracker:
        log.warning("mediapipe is not installed: centre crops instead of the face tracker")
    settings = ExpressionSettings(strength=expression)
    croppers = make_croppers(tracker, size, landmarks=settings.active)
    session = AnimationSession(engine, MotionSettings(relative=True, adapt_scale=False), settings)
    avatar = croppers.avatar(load_avatar_image(str(AVATAR)))
    session.set_avatar(avatar, avatar_landmarks(avatar) if settings.active and tracker else None)
    times, fps = StageTimes(), probe_video(DRIVING).fps
    c0, t0 = cpu_seconds(), time.perf_counter()
    with VideoWriter(output, fps, (size, size)) as writer:
        driven = drive(session, croppers, iter_frames(DRIVING, frames), fps, times, config)
        try:
            for frame in driven:
                t = time.perf_counter()
                writer.write(frame.output)
                times.encode += time.perf_counter() - t
        finally:
            driven.close()
            croppers.close()
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    n = max(1, times.frames)
    description = engine.describe()
    engine.close()
    ms = {stage: 1000 * value / n for stage, value in (
        ("decode", times.decode), ("crop", times.crop), ("keypoints", engine.kp_s), ("animate", engine.animate_s),
        ("motion_and_session", times.keypoints + times.animate - engine.kp_s - engine.animate_s),
        ("encode", times.encode))}
    loop_label = ("pipelined" if config.pipelined else "serial") + f"/{keypoint_threads}/{animate_threads}"
    return {"engine": engine_name, "loop": loop_label, "description": description, "crops": croppers.kind,
            "frames": times.frames,
            "frame_ms": 1000 * wall / n, "fps": n / wall, "cpu_ms_per_frame": 1000 * cpu / n, "stages_ms": ms}


def run_upstream(model, frames: list[np.ndarray], avatar: np.ndarray, device: str = "cpu") -> dict:
    from reenact_app.benchmarking import EagerBaseline

    baseline = EagerBaseline(model, avatar, device=device)
    baseline.step(frames[0], record=False)
    c0 = cpu_seconds()
    for frame in frames:
        baseline.step(frame)
    wall = baseline.times["frame"]
    return {"engine": f"upstream eager fp32, model only, {device}", "frames": len(frames), "frame_ms": 1000 * float(np.median(wall)),
            "cpu_ms_per_frame": 1000 * (cpu_seconds() - c0) / len(frames)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="paper-rt", help="paper-rt: the bundled weights; others: random weights")
    parser.add_argument("--engine", action="append", help="repeatable (default: auto, i.e. the default settings)")
    parser.add_argument("--frames", type=int, default=40, help="driving frames per engine and round")
    parser.add_argument("--baseline-frames", type=int, default=5, help="upstream eager frames per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="0: every core (the default settings)")
    parser.add_argument("--baseline-device", default="cpu", help="where the upstream eager baseline runs (cuda:0 on a GPU)")
    parser.add_argument("--loop", action="append", type=Loop.parse,
                        help="serial | pipelined [/KEYPOINT_THREADS/ANIMATE_THREADS], repeatable (default: "
                        "the loop `reenact animate` uses)")
    parser.add_argument("--expression", type=float, default=1.0, metavar="STRENGTH",
                        help="expression retargeting as `reenact animate --expression` (default 1: on, which "
                        "adds the face mesh to the tracker; 0: off)")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/end-to-end-PRESET.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import torch

    from models import build_model, load_checkpoint
    from reenact_app.benchmarking import hardware
    from reenact_common.video_io import centre_crop, read_frames

    torch.manual_seed(0)
    model = load_checkpoint(None) if args.preset == "paper-rt" else build_model(args.preset).eval()
    if args.threads:
        torch.set_num_threads(args.threads)
    size = model.config.image_size
    clip = [centre_crop(f, size) for f in read_frames(DRIVING, args.baseline_frames + 1)]
    runs = [(name, loop) for name in args.engine or ["auto"] for loop in args.loop or [None]]
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.rounds):
            row = {"load_average": os.getloadavg(),
                   "upstream": run_upstream(model, clip[1:], clip[0], args.baseline_device), "app": []}
            for name, loop in runs:
                row["app"].append(run_app(model, name, args.frames, args.threads, Path(tmp) / f"{name}.mp4", loop,
                                          args.expression))
                log.info("round %d %s %s: %.1f ms/frame end to end (%.1f fps, %.1f ms CPU), upstream model-only "
                         "%.1f ms", index, name, row["app"][-1]["loop"], row["app"][-1]["frame_ms"],
                         row["app"][-1]["fps"], row["app"][-1]["cpu_ms_per_frame"], row["upstream"]["frame_ms"])
            row["load_average_after"] = os.getloadavg()
            rounds.append(row)
    summary = {}
    for i, (name, loop) in enumerate(runs):
        key = name if loop is None else f"{name} {loop.label}"
        ratios = [r["upstream"]["frame_ms"] / r["app"][i]["frame_ms"] for r in rounds]
        cpu_ratios = [r["upstream"]["cpu_ms_per_frame"] / r["app"][i]["cpu_ms_per_frame"] for r in rounds]
        summary[key] = {"loop": rounds[0]["app"][i]["loop"], "speedup_vs_upstream_wall": ratios,
                        "speedup_vs_upstream_cpu": cpu_ratios, "fps": [r["app"][i]["fps"] for r in rounds],
                        "cpu_ms_per_frame": [r["app"][i]["cpu_ms_per_frame"] for r in rounds]}
        name = key
        print(f"{args.preset} {name}: end to end vs upstream eager model-only, same round: wall "
              f"{', '.join(f'{x:.2f}x' for x in ratios)}; CPU {', '.join(f'{x:.2f}x' for x in cpu_ratios)}; fps "
              f"{', '.join(f'{x:.1f}' for x in summary[name]['fps'])}; CPU ms/frame "
              f"{', '.join(f'{x:.1f}' for x in summary[name]['cpu_ms_per_frame'])}")
    report = {"kind": "end-to-end", "preset": args.preset, "hardware": hardware(), "threads": args.threads,
              "expression": args.expression,
              "weights": "bundled" if args.preset == "paper-rt" else "random", "rounds": rounds, "summary": summary}
    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"end-to-end-{args.preset}.json"
    write_report(out, report, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
