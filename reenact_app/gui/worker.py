"""The bridge between worker threads and the UI thread.

Why this shape:
- Frames arrive from the pipeline thread far faster than a busy UI may paint them. `LatestSlot` keeps
  only the newest packet, and `frameReady` is emitted only when the slot goes from empty to full, so
  the Qt event queue never holds more than one frame notification: no latency builds up, ever.
- Slow one-off work (model load, engine build, avatar face detection, opening a camera) runs on a
  single command thread, in order, so the UI thread never blocks and commands never race each other.
- Images are converted to QImage in the producing thread (QImage, unlike QPixmap, is thread-safe), so
  the UI thread only paints.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from reenact_common.errors import ReenactError

log = logging.getLogger(__name__)


def to_qimage(rgb: np.ndarray | None) -> QImage | None:
    """uint8 RGB HxWx3 -> QImage that owns a copy of the pixels (safe after `rgb` is reused)."""
    if rgb is None:
        return None
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    if rgb.ndim == 2:
        return QImage(rgb.data, w, h, rgb.strides[0], QImage.Format.Format_Grayscale8).copy()
    return QImage(rgb.data, w, h, rgb.strides[0], QImage.Format.Format_RGB888).copy()


@dataclass
class FramePacket:
    """One displayed frame: the animated output, the driving frame and what the tracker saw."""

    index: int
    output: QImage | None
    driving: QImage | None = None
    face_box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 in driving-frame pixels
    keypoints: np.ndarray | None = None  # (N, 2) driving-frame pixels (tracker landmarks or model kps)
    face_found: bool | None = None
    stats: dict[str, Any] = field(default_factory=dict)  # fps, latency_ms, per-stage ms
    output_rgb: np.ndarray | None = None  # the raw output, kept for tests and screenshots
    created: float = field(default_factory=time.monotonic)


class LatestSlot:
    """A one-element mailbox: `put` overwrites, `take` empties. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: Any = None
        self.dropped = 0  # frames overwritten before the UI took them

    def put(self, value: Any) -> bool:
        """Stores `value`; True when the slot was empty (the caller should notify the reader)."""
        with self._lock:
            was_empty = self._value is None
            if not was_empty:
                self.dropped += 1
            self._value = value
            return was_empty

    def take(self) -> Any:
        with self._lock:
            value, self._value = self._value, None
            return value


@dataclass
class Command:
    name: str
    fn: Callable[..., Any]
    args: tuple = ()
    on_done: Callable[[Any], None] | None = None  # runs on the command thread after success


class WorkerBridge(QObject):
    """Owns the command thread and the latest-frame slot; all signals are delivered on the UI thread."""

    frameReady = Signal()  # a new packet is in `slot`; call take_frame()
    busyChanged = Signal(str)  # "" = idle, else what is running ("Loading model…")
    message = Signal(str, str, str)  # level ("error"/"warning"/"info"), text, fix/hint
    commandFinished = Signal(str, bool)  # command name, ok

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.slot = LatestSlot()
        self._commands: queue.Queue[Command | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="reenact-gui-commands", daemon=True)
        self._stopped = False
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._thread.start()

    # -- frames -----------------------------------------------------------------------------------
    def publish(self, packet: FramePacket) -> None:
        """Called from any worker thread: keep only the newest packet, notify the UI at most once."""
        if self.slot.put(packet):
            self.frameReady.emit()

    def take_frame(self) -> FramePacket | None:
        return self.slot.take()

    # -- commands ---------------------------------------------------------------------------------
    def submit(self, name: str, fn: Callable[..., Any], *args: Any, on_done: Callable[[Any], None] | None = None) -> None:
        """Queues `fn(*args)` on the command thread; errors become `message` signals, never exceptions."""
        if self._stopped:
            log.debug("worker stopped; dropping command %s", name)
            return
        with self._pending_lock:
            self._pending += 1
        self._commands.put(Command(name, fn, args, on_done))

    @property
    def pending(self) -> int:
        """Commands queued or running (tests wait for 0)."""
        with self._pending_lock:
            return self._pending

    def _run(self) -> None:
        while True:
            cmd = self._commands.get()
            if cmd is None:
                return
            ok = False
            self.busyChanged.emit(cmd.name)
            start = time.perf_counter()
            try:
                result = cmd.fn(*cmd.args)
                if cmd.on_done is not None:
                    cmd.on_done(result)
                ok = True
            except ReenactError as exc:
                log.warning("%s failed: %s", cmd.name, exc)
                self.message.emit("error", f"{cmd.name} failed: {exc}", getattr(exc, "hint", "") or "")
            except Exception as exc:  # noqa: BLE001 - any failure must reach the user, not kill the thread
                log.error("%s crashed:\n%s", cmd.name, traceback.format_exc())
                self.message.emit("error", f"{cmd.name} failed: {type(exc).__name__}: {exc}", "")
            finally:
                log.debug("%s took %.0f ms", cmd.name, 1000 * (time.perf_counter() - start))
                with self._pending_lock:
                    self._pending -= 1
                    idle = self._pending == 0
                if idle:
                    self.busyChanged.emit("")
                self.commandFinished.emit(cmd.name, ok)

    def cancel_pending(self) -> int:
        """Drops queued commands that have not started (shutdown must not wait for a model load queued
        behind the current one). Returns how many were dropped."""
        dropped = 0
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                break
            if cmd is None:
                self._commands.put(None)
                break
            dropped += 1
        with self._pending_lock:
            self._pending -= dropped
        return dropped

    def stop(self, timeout: float = 10.0) -> bool:
        """Finishes the running command, drops nothing already queued, stops the thread. True if joined."""
        if not self._stopped:
            self._stopped = True
            self._commands.put(None)
        if self._thread is threading.current_thread():
            return False
        self._thread.join(timeout)
        alive = self._thread.is_alive()
        if alive:
            log.error("command thread did not stop within %.0f s", timeout)
        return not alive

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
