"""The ONNX export in a child process, so it can't freeze an interactive app.

Why a process and not a thread: torch's exporter holds the GIL for long stretches (measured: a 220 ms UI
stall during the export on the GUI's command thread). In a child process it only competes for CPU. The
export lands in the cache that `create_engine` reads (onnx_engine.export_folder), so the engine build that
follows is quick. Run as `python -m reenact_app.engines.export_child [--checkpoint P] [--config C]
[--no-detail] [--cache-dir D]`.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)


class ChildExport:
    """One export child process; `cancel()` (from any thread) ends it, e.g. when the window closes."""

    def __init__(self, checkpoint: str | None, config: str | None, warped_source_blend: bool = True,
                 cache_dir: Path | None = None):
        self.args = [sys.executable, "-m", __name__]
        if checkpoint:
            self.args += ["--checkpoint", str(checkpoint)]
        if config:
            self.args += ["--config", str(config)]
        if not warped_source_blend:
            self.args.append("--no-detail")
        if cache_dir:
            self.args += ["--cache-dir", str(cache_dir)]
        self.process: subprocess.Popen | None = None
        self._cancelled = threading.Event()

    def run(self, timeout: float = 1800.0) -> bool:
        """Blocks until the export finished; False when it failed or was cancelled."""
        if self._cancelled.is_set():
            return False
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if self._cancelled.wait(0.2) or time.monotonic() > deadline:
                self.process.terminate()
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                return False
        if self.process.returncode != 0:
            err = (self.process.stderr.read() if self.process.stderr else "")[-800:]
            log.warning("ONNX export process failed (%s): %s", self.process.returncode, err)
            return False
        return True

    def cancel(self) -> None:
        self._cancelled.set()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m reenact_app.engines.export_child")
    parser.add_argument("--checkpoint", default=None, help="checkpoint file (default: the bundled weights)")
    parser.add_argument("--config", default=None, help="architecture preset or upstream YAML")
    parser.add_argument("--no-detail", action="store_true", help="export with the warped-source blend off")
    parser.add_argument("--cache-dir", type=Path, default=None, help="export cache (default: $REENACT_CACHE)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if hasattr(os, "nice"):
        os.nice(10)  # background work: the window (and a running call) get the CPU first
    from reenact_app.engines.facade import ModelSpec, load_model
    from reenact_app.engines.onnx_engine import ensure_export

    model = load_model(ModelSpec(args.checkpoint, args.config, warped_source_blend=not args.no_detail))
    print(ensure_export(model, args.cache_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
