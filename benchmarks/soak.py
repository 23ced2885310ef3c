"""Soak test of the live pipeline: hours-long calls must not leak, slow down or build up latency.

    python -m benchmarks.soak [--minutes 30] [--interval 5] [--switch-cycles 300] [--csv docs/soak.csv]
                              [--call --record OUT.mp4]

Phase 1 ("steady"): LivePipeline with the real engine (create_engine(None): the bundled weights, best
engine available, wrapped in its runtime fallback) driven by a looping shared clip paced at its frame
rate, feeding a virtual camera (the in-memory fake backend). Every `interval` seconds one CSV row:
resident memory, fps, end-to-end latency (median and p95 of that interval), threads, open files, this
process's CPU use and the machine's load average (other jobs compete for the CPU: read fps with it).

Phase 2 ("switch"): while the pipeline runs, `switch_cycles` rounds of avatar switching (re-detected
from the picture each time), engine switching (PyTorch <-> ONNX Runtime when both are available) and
calibration; one CSV row per cycle.

`--call` runs the steady phase as a call does: full-resolution output into a 1280x720 virtual camera
at a steady 30 fps (the fake backend) and, with `--record`, a real-time mp4 recording next to it.

Pass criteria (printed at the end, exit code 1 if one fails), after `warmup` seconds:
  memory growth < 50 MB (median RSS of the last window minus the first window, each 10 % of samples,
  at least 3);
  fps decline < 10 % (median fps, first vs last window);
  no latency growth (median latency of the last window <= first window x 1.1 + 10 ms; a frame stuck
  in a queue would add a whole frame period, 40 ms at 25 fps);
  switch phase: no crash, frames still coming, RSS growth < 50 MB after the first 10 % of cycles, no
  thread or file-descriptor growth.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SHARED = Path(os.environ.get("REENACT_SHARED", ROOT.parent / "shared"))
CLIP = SHARED / "data/clips/rizkiarm+LipNet/evaluation/samples/GRID/bbaf2n.mpg"
AVATARS = (ROOT / "assets/avatars/monalisa.jpg", ROOT / "assets/avatars/gogol.jpg")
FIELDS = ("phase", "t_s", "rss_mb", "fps", "latency_ms", "latency_p95_ms", "frames_out", "errors", "threads",
          "open_fds", "cpu_pct", "load1", "engine", "state")
MEMORY_LIMIT_MB = 50.0
FPS_DECLINE_LIMIT = 0.10

log = logging.getLogger("soak")


def rss_mb() -> float:
    """Resident memory of this process (psutil if installed, else /proc/self/status)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        pass
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def load1() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


class LatencyProbe:
    """on_frame callback: collects latencies of live frames between samples."""

    def __init__(self):
        self._lock = threading.Lock()
        self._values: list[float] = []

    def __call__(self, frame) -> None:
        if frame.driving is not None:
            with self._lock:
                self._values.append(frame.latency_ms)

    def take(self) -> list[float]:
        with self._lock:
            values, self._values = self._values, []
        return values


class Sampler:
    """One CSV row per call: deltas since the previous call."""

    def __init__(self, pipe, probe: LatencyProbe, writer, t0: float):
        self.pipe, self.probe, self.writer, self.t0 = pipe, probe, writer, t0
        self.rows: list[dict] = []
        self._last = (time.monotonic(), pipe.stats.frames_out, cpu_seconds())

    def sample(self, phase: str) -> dict:
        now, frames, cpu = time.monotonic(), self.pipe.stats.frames_out, cpu_seconds()
        t_prev, f_prev, c_prev = self._last
        self._last = (now, frames, cpu)
        dt = max(now - t_prev, 1e-6)
        lat = sorted(self.probe.take())
        row = {
            "phase": phase,
            "t_s": round(now - self.t0, 2),
            "rss_mb": round(rss_mb(), 1),
            "fps": round((frames - f_prev) / dt, 2),
            "latency_ms": round(statistics.median(lat), 1) if lat else "",
            "latency_p95_ms": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 1) if lat else "",
            "frames_out": frames,
            "errors": self.pipe.stats.errors,
            "threads": threading.active_count(),
            "open_fds": open_fds(),
            "cpu_pct": round(100.0 * (cpu - c_prev) / dt, 1),
            "load1": round(load1(), 2),
            "engine": self.pipe.engine.describe(),
            "state": self.pipe.stats.state,
        }
        self.rows.append(row)
        self.writer.writerow(row)
        return row


def cpu_seconds() -> float:
    """CPU time (user + system) this process has used: its CPU share between two samples."""
    t = os.times()
    return t.user + t.system


@dataclass
class Criterion:
    name: str
    value: float
    limit: str
    ok: bool

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name}: {self.value:.3g} ({self.limit})"


def _window_medians(rows: list[dict], key: str) -> tuple[float, float]:
    """Medians of the first and last 10 % of samples, each window at least 3 samples when there are 9 or
    more: RSS jitters by +-20 MB from one sample to the next while the PyTorch engine runs (large tensors
    come and go), so a one-sample window in a short run compares two points of that jitter."""
    values = [float(r[key]) for r in rows if r[key] != ""]
    n = max(1, min(3, len(values) // 3), len(values) // 10)
    return statistics.median(values[:n]), statistics.median(values[-n:])


def judge_steady(rows: list[dict], warmup_s: float) -> list[Criterion]:
    """Memory, fps and latency criteria over the steady-phase rows after warm-up."""
    rows = [r for r in rows if r["phase"] == "steady" and r["t_s"] >= warmup_s]
    if len(rows) < 4:
        return [Criterion("steady samples after warm-up", len(rows), ">= 4 needed", False)]
    m0, m1 = _window_medians(rows, "rss_mb")
    f0, f1 = _window_medians(rows, "fps")
    l0, l1 = _window_medians(rows, "latency_ms")
    decline = 1.0 - f1 / f0 if f0 > 0 else 1.0
    return [
        Criterion("memory growth after warm-up (MB)", m1 - m0, f"< {MEMORY_LIMIT_MB:.0f}", m1 - m0 < MEMORY_LIMIT_MB),
        Criterion("fps decline, first vs last window", decline, f"< {FPS_DECLINE_LIMIT:.0%}; fps {f0:.1f} -> {f1:.1f}",
                  decline < FPS_DECLINE_LIMIT),
        Criterion("latency growth, first vs last window (ms)", l1 - l0,
                  f"<= 10 % + 10 ms; median {l0:.0f} -> {l1:.0f} ms", l1 <= l0 * 1.1 + 10.0),
    ]


def judge_switch(rows: list[dict], crashed: str | None) -> list[Criterion]:
    rows = [r for r in rows if r["phase"] == "switch"]
    out = [Criterion("switch cycles without crash", len(rows), crashed or "pipeline alive, frames after every cycle",
                     crashed is None)]
    if len(rows) >= 10:
        base = rows[max(1, len(rows) // 10) - 1]
        growth = max(float(r["rss_mb"]) for r in rows[-max(1, len(rows) // 10):]) - float(base["rss_mb"])
        out.append(Criterion("switch-phase memory growth (MB)", growth, f"< {MEMORY_LIMIT_MB:.0f}", growth < MEMORY_LIMIT_MB))
        threads = rows[-1]["threads"] - base["threads"]
        fds = rows[-1]["open_fds"] - base["open_fds"]
        out.append(Criterion("thread growth", threads, "<= 2", threads <= 2))
        out.append(Criterion("open-file growth", fds, "<= 8", fds <= 8))
    return out


def _switch_loop(pipe, sampler: Sampler, cycles: int, engines: list, avatars: list) -> str | None:
    """Avatar, engine and calibration switching; returns why it failed, or None."""
    last = pipe.latest.index if pipe.latest is not None else -1
    for i in range(cycles):
        pipe.set_avatar(avatars[i % len(avatars)])  # re-detects the face in the picture every time
        if len(engines) > 1:
            pipe.set_engine(engines[i % len(engines)])
        pipe.calibrate()
        frame = None
        for _ in range(3):  # the worker runs the commands, then processes frames after them
            frame = pipe.wait_frame(after=last, timeout=30)
            if frame is None:
                break
            last = frame.index
        if frame is None or not pipe.running:
            return f"no frame after cycle {i} (pipeline {'running' if pipe.running else 'stopped'}, state {pipe.stats.state})"
        sampler.sample("switch")
    return None


def build_engines(switch_engines: bool):
    """The real engine (bundled weights, auto) and, for switching, PyTorch and ONNX Runtime CPU engines."""
    from models import load_checkpoint
    from reenact_app.engines.select import create_engine

    main = create_engine(None)
    extra = []
    if switch_engines:
        model = load_checkpoint(None)
        for name in ("torch-cpu", "onnxruntime-cpu"):
            try:
                extra.append(create_engine(model, name))
            except Exception as exc:  # noqa: BLE001 - onnxruntime missing: switch what exists
                log.warning("engine %s unavailable for switching: %s", name, exc)
    return main, extra


def run_soak(
    minutes: float = 30.0,
    interval: float = 5.0,
    warmup_s: float | None = None,
    switch_cycles: int = 300,
    csv_path: Path | str = ROOT / "docs/soak.csv",
    png_path: Path | str | None = ROOT / "docs/soak.png",
    clip: Path | str = CLIP,
    engines=None,
    call: bool = False,
    record: Path | str | None = None,
) -> dict:
    """Runs both phases; returns {"rows", "criteria", "passed", "seconds"}. `engines`: (main, [switch...])
    to reuse engines (tests); default build_engines()."""
    from reenact_app.capture import VideoFileSource
    from reenact_app.images import load_avatar_image
    from reenact_app.pipeline import LivePipeline, PipelineConfig
    from reenact_app.sinks import Recorder, RecorderConfig, VirtualCamera, VirtualCameraConfig

    duration = minutes * 60.0
    warmup_s = min(120.0, 0.2 * duration) if warmup_s is None else warmup_s
    main, extra = engines if engines is not None else build_engines(switch_cycles > 0)
    pictures = [load_avatar_image(p) for p in AVATARS]
    if call:  # large portraits (the bundled paintings upscaled 4x; the pipeline caps them at 1280 px)
        import cv2

        pictures = [cv2.resize(p, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC) for p in pictures]
    source = VideoFileSource(clip, loop=True, realtime=True)
    if call:
        vcam = VirtualCamera(VirtualCameraConfig(1280, 720, 30, backend="reenact-fake", steady=True))
    else:
        vcam = VirtualCamera(VirtualCameraConfig(640, 480, 25, backend="reenact-fake"))
    sinks = [vcam]
    if record is not None:
        sinks.append(Recorder(RecorderConfig(record, fps=25, size=(1280, 720), realtime=True)))
    probe = LatencyProbe()
    pipe = LivePipeline(source, main, pictures[0], PipelineConfig(full_resolution=True), sinks=sinks, on_frame=probe)
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    crashed = None
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        pipe.start()
        try:
            if pipe.wait_frame(timeout=120) is None:
                raise RuntimeError(f"pipeline produced no frame: {pipe.stats.snapshot()['messages']}")
            sampler = Sampler(pipe, probe, writer, t0)
            while time.monotonic() - t0 < duration:
                time.sleep(min(interval, max(0.0, duration - (time.monotonic() - t0))))
                row = sampler.sample("steady")
                handle.flush()
                log.info("t=%6.0fs rss=%6.1f MB fps=%5.1f latency=%s ms load=%.1f", row["t_s"], row["rss_mb"],
                         row["fps"], row["latency_ms"], row["load1"])
                if not pipe.running:
                    crashed = f"pipeline stopped during the steady phase: {pipe.stats.state}"
                    break
            if switch_cycles > 0 and crashed is None:
                engines_cycle = extra if len(extra) > 1 else [main]
                crashed = _switch_loop(pipe, sampler, switch_cycles, engines_cycle, pictures)
        finally:
            pipe.stop()
            main.close()
            for engine in extra:
                engine.close()
    rows = sampler.rows
    criteria = judge_steady(rows, warmup_s) + (judge_switch(rows, crashed) if switch_cycles > 0 else [])
    if crashed and switch_cycles == 0:
        criteria.append(Criterion("steady phase without crash", 0, crashed, False))
    if png_path is not None:
        plot(rows, Path(png_path), warmup_s)
    return {"rows": rows, "criteria": criteria, "passed": all(c.ok for c in criteria), "seconds": time.monotonic() - t0}


def plot(rows: list[dict], path: Path, warmup_s: float) -> None:
    """RSS, fps (with load average) and latency over time; the switch phase is shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] / 60 for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    axes[0].plot(t, [r["rss_mb"] for r in rows], color="tab:blue")
    axes[0].set_ylabel("resident memory (MB)")
    axes[1].plot(t, [r["fps"] for r in rows], color="tab:green", label="pipeline fps")
    axes[1].set_ylabel("fps")
    load_ax = axes[1].twinx()
    load_ax.plot(t, [r["load1"] for r in rows], color="tab:gray", alpha=0.5, label="load average (1 min)")
    load_ax.set_ylabel("machine load", color="tab:gray")
    lat_t = [r["t_s"] / 60 for r in rows if r["latency_ms"] != ""]
    axes[2].plot(lat_t, [r["latency_ms"] for r in rows if r["latency_ms"] != ""], label="median", color="tab:red")
    axes[2].plot(lat_t, [r["latency_p95_ms"] for r in rows if r["latency_ms"] != ""], label="p95", color="tab:orange",
                 alpha=0.6)
    axes[2].set_ylabel("end-to-end latency (ms)")
    axes[2].set_xlabel("minutes")
    axes[2].legend(loc="upper left")
    switch = [r["t_s"] / 60 for r in rows if r["phase"] == "switch"]
    for ax in axes:
        ax.axvline(warmup_s / 60, color="k", ls=":", lw=1)
        if switch:
            ax.axvspan(switch[0], switch[-1], color="tab:purple", alpha=0.08)
        ax.grid(alpha=0.3)
    axes[0].set_title("Reenact soak: live pipeline, real engine, looping clip (dotted: end of warm-up; "
                      "shaded: avatar/engine/calibration switching)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="steady-phase duration (default 30)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between samples (default 5)")
    p.add_argument("--warmup", type=float, help="seconds ignored by the criteria (default min(120, 20 %%))")
    p.add_argument("--switch-cycles", type=int, default=300, help="avatar/engine/calibration cycles (default 300)")
    p.add_argument("--clip", default=str(CLIP), help="driving clip, looped")
    p.add_argument("--csv", default=str(ROOT / "docs/soak.csv"))
    p.add_argument("--png", default=str(ROOT / "docs/soak.png"))
    p.add_argument("--call", action="store_true", help="1280x720 steady 30 fps virtual camera (as a call)")
    p.add_argument("--record", help="also record the call to this mp4 (real-time pacing)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result = run_soak(args.minutes, args.interval, args.warmup, args.switch_cycles, args.csv, args.png, args.clip,
                      call=args.call, record=args.record)
    return report(result, "soak", f"{args.csv}, {args.png}")


def report(result: dict, label: str, where: str) -> int:
    """Print the pass criteria of a soak run; exit status 0 when all passed (shared with soak_gui.py)."""
    print(f"\n{label} ran {result['seconds'] / 60:.1f} min, {len(result['rows'])} samples -> {where}")
    for c in result["criteria"]:
        print(c.line())
    print("PASSED" if result["passed"] else "FAILED")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
