"""Soak of the GUI: the real main window on the offscreen platform, the bundled weights (auto engine),
a looping shared clip as the webcam and the fake virtual camera, for a configurable time; then avatar
switching (as the number keys do) and calibration cycles. Same CSV columns and pass criteria as
benchmarks/soak.py; fps here is frames painted per second (what the user sees).

    python -m benchmarks.soak_gui [--minutes 10] [--switch-cycles 100] [--csv docs/soak_gui.csv]
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from benchmarks.soak import CLIP, FIELDS, cpu_seconds, judge_steady, judge_switch, load1, open_fds, plot, report, rss_mb

log = logging.getLogger("soak-gui")


def _spin(ms: int) -> None:
    """A real Qt event loop for `ms` (releases the GIL while idle, as app.exec() does)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        _spin(20)
    return True


def run_gui_soak(minutes: float, interval: float, warmup_s: float, switch_cycles: int, csv_path: Path,
                 png_path: Path | None, clip: Path = CLIP) -> dict:
    os.environ.setdefault("REENACT_CONFIG_DIR", tempfile.mkdtemp(prefix="reenact-soak-gui-"))  # no user settings
    from reenact_app.gui.app import create_application
    from reenact_app.gui.run import preload_heavy_modules

    create_application(offscreen=True)
    preload_heavy_modules()
    from reenact_app.gui.controller import AppController
    from reenact_app.gui.main_window import MainWindow
    from reenact_app.gui.settings import AppSettings
    from reenact_app.sinks.virtual_camera import FAKE_BACKEND

    controller = AppController(AppSettings(), persist=False, driving=str(clip), vcam_backend=FAKE_BACKEND)
    window = MainWindow(controller)
    window.resize(1200, 760)
    window.show()
    controller.start()
    rows: list[dict] = []
    crashed = None
    t0 = time.monotonic()
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        try:
            if not _wait(lambda: controller.state.frames_shown >= 3, 300):
                raise RuntimeError(f"the window showed no frame: {controller.state.last_message}")
            controller.start_virtual_camera()
            last = (time.monotonic(), controller.state.frames_shown, cpu_seconds())

            def sample(phase: str) -> None:
                nonlocal last
                now, shown, cpu = time.monotonic(), controller.state.frames_shown, cpu_seconds()
                dt = max(now - last[0], 1e-6)
                pipe = controller.pipeline
                row = {"phase": phase, "t_s": round(now - t0, 2), "rss_mb": round(rss_mb(), 1),
                       "fps": round((shown - last[1]) / dt, 2), "latency_ms": round(controller.state.latency_ms, 1),
                       "latency_p95_ms": "", "frames_out": shown, "errors": pipe.stats.errors if pipe else -1,
                       "threads": threading.active_count(), "open_fds": open_fds(),
                       "cpu_pct": round(100.0 * (cpu - last[2]) / dt, 1), "load1": round(load1(), 2),
                       "engine": controller.state.engine_label, "state": controller.state.pipeline_state}
                last = (now, shown, cpu)
                rows.append(row)
                writer.writerow(row)
                handle.flush()

            while time.monotonic() - t0 < minutes * 60:
                _spin(int(interval * 1000))
                sample("steady")
                log.info("t=%6.0fs rss=%6.1f MB shown=%5.1f fps latency=%s ms load=%.1f", rows[-1]["t_s"],
                         rows[-1]["rss_mb"], rows[-1]["fps"], rows[-1]["latency_ms"], rows[-1]["load1"])
            n_avatars = len(controller.avatars)
            for i in range(switch_cycles):
                controller.select_avatar((i + 1) % n_avatars)
                controller.calibrate()
                target = controller.state.frames_shown + 3
                ok = _wait(lambda: controller.idle() and controller.state.frames_shown >= target, 60)
                if not ok or controller.pipeline is None:
                    crashed = f"no frames after cycle {i} ({controller.state.last_message})"
                    break
                sample("switch")
        finally:
            window.close()
            stopped = controller.shutdown()
            if not stopped and crashed is None:
                crashed = "threads left running at shutdown"
    criteria = judge_steady(rows, warmup_s) + (judge_switch(rows, crashed) if switch_cycles else [])
    if png_path is not None:
        plot(rows, png_path, warmup_s)
    return {"rows": rows, "criteria": criteria, "passed": all(c.ok for c in criteria), "seconds": time.monotonic() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=60.0)
    p.add_argument("--switch-cycles", type=int, default=100)
    p.add_argument("--csv", default=str(ROOT / "docs/soak_gui.csv"))
    p.add_argument("--png", default=str(ROOT / "docs/soak_gui.png"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    result = run_gui_soak(args.minutes, args.interval, args.warmup, args.switch_cycles, Path(args.csv), Path(args.png))
    return report(result, "GUI soak", args.csv)


if __name__ == "__main__":
    sys.exit(main())
