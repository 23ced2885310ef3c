"""`reenact-app`: the desktop app, and its headless screenshot mode.

    reenact-app                                   # bundled avatar + weights, webcam or the demo clip
    reenact-app --driving VIDEO --avatar IMAGE --frames N --screenshot OUT.png   # headless (offscreen)

Heavy imports (Qt, torch, cv2) happen after the display check, so a machine without a display gets
one clear line instead of a Qt plugin abort.
"""

from __future__ import annotations

import argparse
import logging
import sys

from reenact_app import __version__

log = logging.getLogger("reenact.gui")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reenact-app", description="Reenact: real-time face reenactment desktop app.")
    p.add_argument("--version", action="version", version=f"reenact-app {__version__}")
    p.add_argument("--driving", help="driving video file, image folder or camera index (default: webcam, else the demo clip)")
    p.add_argument("--avatar", help="avatar image (default: the last one used, else the first bundled avatar)")
    p.add_argument("--model", help="model checkpoint (default: bundled weights)")
    p.add_argument("--config", help="upstream FOMM YAML config for an upstream checkpoint")
    p.add_argument("--engine", choices=("auto", "tensorrt", "onnxruntime", "torch"), help="inference engine")
    p.add_argument("--frames", type=int, default=0, help="with --screenshot: frames to run before the screenshot (default 30)")
    p.add_argument("--screenshot", metavar="OUT.png", help="run N frames (--frames), save a screenshot of the real window and exit; offscreen when there is no display")
    p.add_argument("--offscreen", action="store_true", help="with --screenshot: use the offscreen platform even if a display exists")
    p.add_argument("--timeout", type=float, default=300.0, help="with --screenshot: give up after this many seconds")
    p.add_argument("--fresh", action="store_true", help="ignore saved settings for this run (they are not overwritten)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if argv is None and not args.verbose:  # the program owns its process: filter native start-up chatter
        from reenact_app import native_stderr

        native_stderr.install()  # before logging binds its handler to sys.stderr
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from reenact_app.gui.app import NO_DISPLAY_MESSAGE, has_display, xcb_problem

    if not args.screenshot:
        if not has_display():
            print(NO_DISPLAY_MESSAGE, file=sys.stderr)
            return 2
        problem = xcb_problem()
        if problem:
            print(problem, file=sys.stderr)
            return 2
    from reenact_app.gui.run import run_app, run_screenshot

    if args.screenshot:
        return run_screenshot(args)
    return run_app(args)


if __name__ == "__main__":
    sys.exit(main())
