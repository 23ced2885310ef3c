"""First-run ONNX export in a child process, so it can't freeze the window.

Why a process and not the command thread: torch's exporter holds the GIL for long stretches (measured:
a 220 ms UI stall during the export on the command thread). In a child process it only competes for
CPU. The export lands in the same cache that `create_engine` reads, so the engine build that follows
is quick. Run as `python -m reenact_app.gui.export_job CHECKPOINT|- [CONFIG] [detail|no-detail]`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)


def needs_export(model, engine: str) -> bool:
    """True when `create_engine(model, engine)` would export to ONNX now (ORT may be picked, no cache)."""
    if engine not in ("auto", "onnxruntime", "onnxruntime-cpu", "onnxruntime-cuda"):
        return False
    try:
        import onnxruntime  # noqa: F401

        from export.onnx_export import model_hash, read_manifest
        from reenact_app.engines import select
        from reenact_app.engines.onnx_engine import default_cache_dir
    except ImportError:
        return False
    if engine == "auto":
        try:
            if select.tensorrt_status()[0]:
                return False  # TensorRT comes first and does not need the ONNX graphs
        except Exception:  # noqa: BLE001 - a broken probe just means "no TensorRT"
            pass
    try:
        read_manifest(default_cache_dir() / "onnx" / model_hash(model))
        return False
    except Exception:  # noqa: BLE001 - any unreadable/missing export means: export
        return True


class ExportJob:
    """The child process; `cancel()` (from any thread) ends it, e.g. when the window closes."""

    def __init__(self, checkpoint: str | None, config: str | None, detail: bool = True):
        """`detail=False`: export with the warped-source blend off (the app's "Avatar detail" setting)."""
        self.args = [sys.executable, "-m", __name__, checkpoint or "-", config or "", "detail" if detail else "no-detail"]
        self._proc: subprocess.Popen | None = None
        self._cancelled = threading.Event()

    def run(self, timeout: float = 1800.0) -> bool:
        """Blocks (command thread) until the export finished; False when it failed or was cancelled."""
        if self._cancelled.is_set():
            return False
        self._proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        while self._proc.poll() is None:
            if self._cancelled.wait(0.2) or time.monotonic() > deadline:
                self._proc.terminate()
                try:
                    self._proc.wait(5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                return False
        if self._proc.returncode != 0:
            err = (self._proc.stderr.read() if self._proc.stderr else "")[-800:]
            log.warning("ONNX export process failed (%s): %s", self._proc.returncode, err)
            return False
        return True

    def cancel(self) -> None:
        self._cancelled.set()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if hasattr(os, "nice"):
        os.nice(10)  # background work: the window (and a running call) get the CPU first
    from models import load_checkpoint
    from reenact_app.engines.onnx_engine import ensure_export

    checkpoint = None if argv[0] in ("-", "") else argv[0]
    config = argv[1] if len(argv) > 1 and argv[1] else None
    model = load_checkpoint(checkpoint, config)
    if len(argv) > 2 and argv[2] == "no-detail":
        model.set_warped_source_blend(False)
    folder = ensure_export(model)
    print(Path(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
