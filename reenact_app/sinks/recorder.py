"""Recording the output (optionally next to the driving view) to an H.264 mp4.

Encoding runs in its own thread behind a bounded queue, so a slow disk or encoder never stalls the
call; if the queue is full the frame is dropped from the recording (counted in `frames_dropped`).
Any write failure (disk full, folder removed, permission) stops the recording with a MediaError
that the pipeline reports, while the call goes on. The file written so far is finalised if possible.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from reenact_app.compositor import letterbox, side_by_side
from reenact_app.errors import MediaError
from reenact_app.sinks import Sink

log = logging.getLogger(__name__)

_STOP = object()


def _default_writer(path: Path, fps: float, size: tuple[int, int]):
    from reenact_app.video_io import VideoWriter

    return VideoWriter(path, fps, size)


@dataclass
class RecorderConfig:
    path: str | Path = "recording.mp4"
    fps: float = 25.0  # one output frame = one video frame at this rate
    size: tuple[int, int] | None = None  # (width, height); None = the first frame's size (made even)
    side_by_side: bool = False  # driving frame on the left, output on the right
    max_queue: int = 64  # frames waiting for the encoder before new ones are dropped
    block_when_full: bool = False  # True: wait for the encoder instead of dropping (offline rendering)


class Recorder(Sink):
    """mp4 recorder sink. `writer_factory(path, fps, (w, h))` returns an object with write(rgb) and
    close(); the default is reenact_app.video_io.VideoWriter (H.264 via imageio-ffmpeg)."""

    name = "recorder"

    def __init__(self, config: RecorderConfig, writer_factory: Callable | None = None):
        self.config = config
        self.path = Path(config.path)
        self._factory = writer_factory or _default_writer
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, config.max_queue))
        self._thread: threading.Thread | None = None
        self._writer = None
        self.size: tuple[int, int] | None = config.size
        self.frames_written = 0
        self.frames_dropped = 0
        self.error: str | None = None
        self._closed = False

    @property
    def recording(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.error is None

    def open(self) -> None:
        """Checks the output can be written (before the call starts, so the user hears it at once)."""
        from reenact_app.video_io import check_writable

        check_writable(self.path)

    def _compose(self, image: np.ndarray, driving: np.ndarray | None) -> np.ndarray:
        frame = side_by_side(driving, image) if (self.config.side_by_side and driving is not None) else image
        if self.size is None:
            h, w = frame.shape[:2]
            self.size = (w + w % 2, h + h % 2)  # H.264 yuv420p needs even sizes
        out = letterbox(frame, *self.size)
        return out.copy() if out is image else out  # the caller may reuse its buffer

    def write(self, image: np.ndarray, driving: np.ndarray | None = None) -> None:
        if self.error is not None:
            raise MediaError(self.error)
        if self._closed:
            return
        frame = self._compose(image, driving)
        if self._thread is None:
            self._start()
        try:
            if self.config.block_when_full:
                while self._thread.is_alive():
                    try:
                        self._queue.put(frame, timeout=0.2)
                        break
                    except queue.Full:
                        continue
            else:
                self._queue.put_nowait(frame)
        except queue.Full:
            self.frames_dropped += 1
        if self.error is not None:
            raise MediaError(self.error)

    def _start(self) -> None:
        try:
            self._writer = self._factory(self.path, self.config.fps, self.size)
        except MediaError as exc:
            self.error = f"recording not started: {exc}"
            raise MediaError(self.error) from exc
        except OSError as exc:
            self.error = f"recording not started: can't write {self.path}: {exc}"
            raise MediaError(self.error) from exc
        log.info("recording to %s (%dx%d @ %.1f fps)", self.path, *self.size, self.config.fps)
        self._thread = threading.Thread(target=self._run, name="reenact-recorder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            frame = self._queue.get()
            if frame is _STOP:
                return
            if self.error is not None:
                continue  # drain
            try:
                self._writer.write(frame)
                self.frames_written += 1
            except Exception as exc:  # noqa: BLE001 - disk full, pipe closed, fake faults
                self.error = (
                    f"recording stopped after {self.frames_written} frames: writing {self.path} failed "
                    f"({exc}). Free disk space or choose another folder; the call goes on."
                )
                log.error(self.error)

    def close(self) -> None:
        """Finish the file (waits for queued frames). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(30.0)
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception as exc:  # noqa: BLE001
                if self.error is None:
                    self.error = f"finishing {self.path} failed: {exc}"
                log.warning("finishing %s failed: %s", self.path, exc)
        if self._thread is not None:
            log.info(
                "recording %s: %d frames written, %d dropped%s",
                self.path,
                self.frames_written,
                self.frames_dropped,
                f" (error: {self.error})" if self.error else "",
            )
