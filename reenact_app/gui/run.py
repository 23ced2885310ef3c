"""Running the app: the interactive event loop, and the headless screenshot mode.

The screenshot mode exercises exactly the interactive code (same window, controller and pipeline) on
the offscreen platform, so README screenshots and CI smoke runs show the real thing.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("reenact.gui")

DEFAULT_SCREENSHOT_FRAMES = 30


def preload_heavy_modules() -> None:
    """Imports mediapipe, the engines' heavy modules (torch, ONNX Runtime, see
    engines.preload_engine_modules) and the pipeline before the window exists.

    Importing a large C extension holds the GIL for 100+ ms at a time; done on the command thread while
    the window is up, that would freeze the UI (measured: a 130 ms stall at the first avatar). Done
    here, it only delays the window by a fraction of a second.
    """
    import mediapipe  # noqa: F401

    from reenact_app.engines import preload_engine_modules

    # first virtual camera / recording start
    for optional in ("pyvirtualcam", "imageio_ffmpeg"):
        try:
            __import__(optional)
        except ImportError:
            pass
    preload_engine_modules()  # first checkpoint load, first ONNX Runtime engine

    import reenact_app.pipeline  # noqa: F401
    import reenact_app.sinks  # noqa: F401


def _make(args: argparse.Namespace, offscreen: bool):
    from reenact_app.gui.app import create_application

    app = create_application(offscreen=offscreen)
    preload_heavy_modules()
    from reenact_app.gui.controller import AppController
    from reenact_app.gui.main_window import MainWindow
    from reenact_app.gui.settings import AppSettings, load_settings

    fresh = getattr(args, "fresh", False)
    settings = AppSettings() if fresh else load_settings()
    controller = AppController(
        settings,
        persist=not (fresh or getattr(args, "screenshot", None)),
        driving=args.driving,
        avatar=args.avatar,
        model=args.model,
        config=args.config,
        engine=args.engine,
    )
    window = MainWindow(controller)
    return app, controller, window


def run_app(args: argparse.Namespace) -> int:
    app, controller, window = _make(args, offscreen=False)
    window.show()
    controller.start()
    code = app.exec()
    controller.shutdown()
    return int(code)


def run_screenshot(args: argparse.Namespace) -> int:
    """Headless: run N frames through the real window, save it as an image, report the UI stall."""
    from PySide6.QtCore import QEventLoop

    from reenact_app.gui.stall import StallMeter

    from reenact_app.gui.app import has_display, xcb_problem

    frames = args.frames or DEFAULT_SCREENSHOT_FRAMES
    # With a display (a desktop, or Xvfb for README screenshots) the real platform plugin draws the
    # window; without one, or where the X11 plugin cannot load, the offscreen plugin does. Either way it
    # is the same window and code.
    offscreen = getattr(args, "offscreen", False) or not has_display()
    if not offscreen:
        problem = xcb_problem()
        if problem:
            log.warning("%s; taking the screenshot offscreen", problem)
            offscreen = True
    app, controller, window = _make(args, offscreen=offscreen)
    log.info("screenshot mode on the %s platform", app.platformName())
    window.resize(1280, 800)
    window.show()
    meter = StallMeter(5)
    meter.start()
    controller.start()
    deadline = time.monotonic() + args.timeout
    ok = False
    while time.monotonic() < deadline:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.002)
        if controller.state.frames_out >= frames and controller.state.frames_shown > 0:
            ok = True
            break
        if controller.idle() and controller.pipeline is None and controller.state.weights_missing:
            break  # nothing will ever run: screenshot the banner and report
    # let the last frame and the status bar paint
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.005)
    controller.stateChanged.emit()
    app.processEvents()
    report = meter.stop()
    out = Path(args.screenshot)
    out.parent.mkdir(parents=True, exist_ok=True)
    saved = window.grab_screenshot(out)
    pipeline = controller.pipeline
    if pipeline is not None:
        print(pipeline.stats.summary())
    print(report.line())
    print(f"frames out {controller.state.frames_out}, shown {controller.state.frames_shown}; engine {controller.state.engine_label or '-'}")
    window.close()
    controller.shutdown()
    if not saved:
        print(f"reenact-app: could not write {out}", file=sys.stderr)
        return 1
    print(f"screenshot: {out}")
    if not ok:
        print(f"reenact-app: stopped before {frames} frames: {controller.state.last_message or 'timeout'}", file=sys.stderr)
        return 1
    if controller.state.avatar_index < 0:
        print(f"reenact-app: no avatar could be loaded: {controller.state.last_message}", file=sys.stderr)
        return 1
    return 0
