"""Recording the output (optionally next to the driving view) to an H.264 mp4.

Encoding runs in its own thread behind a bounded queue, so a slow disk or encoder never stalls the
call; if the queue is full the frame is dropped from the recording (counted in `frames_dropped`).
Any write failure (disk full, folder removed, permission) stops the recording with a MediaError
that the pipeline reports, while the call goes on. The file written so far is finalised if possible.

Live recordings are paced by the clock (`realtime=True`): an mp4 has a constant frame rate, but a live
pipeline delivers frames at whatever rate inference allows. Writing each frame once at the nominal rate
made a 12 fps call play back twice as fast; instead each frame holds its place in time (repeated until
the next one arrives, the newest of several in one frame interval wins), so a minute of call is a minute
of video. Offline rendering writes every frame once, in order.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from reenact_app.compositor import letterbox, side_by_side
from reenact_common.errors import MediaError
from reenact_app.sinks import Sink

log = logging.getLogger(__name__)

_STOP = object()


def _default_writer(path: Path, fps: float, size: tuple[int, int]):
    from reenact_common.video_io import VideoWriter

    return VideoWriter(path, fps, size)


@dataclass
class RecorderConfig:
    path: str | Path = "recording.mp4"
    fps: float = 25.0  # one output frame = one video frame at this rate
    size: tuple[int, int] | None = None  # (width, height); None = the first frame's size (made even)
    side_by_side: bool = False  # driving frame on the left, output on the right
    max_queue: int = 64  # frames waiting for the encoder before new ones are dropped
    block_when_full: bool = False  # True: wait for the encoder instead of dropping (offline rendering)
    realtime: bool = False  # True: place frames by arrival time (live calls); False: one frame each (offline)


class Recorder(Sink):
    """mp4 recorder sink. `writer_factory(path, fps, (w, h))` returns an object with write(rgb) and
    close(); the default is reenact_common.video_io.VideoWriter (H.264 via imageio-ffmpeg)."""

    name = "recorder"

    def __init__(self, config: RecorderConfig, writer_factory: Callable | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self._clock = clock
        self.path = Path(config.path)
        self._factory = writer_factory or _default_writer
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, config.max_queue))
        self._thread: threading.Thread | None = None
        self._writer = None
        self.size: tuple[int, int] | None = config.size
        self.frames_written = 0  # video frames in the file, repeats included
        self.frames_dropped = 0  # frames lost to a full encoder queue
        self.frames_replaced = 0  # realtime: frames superseded by a newer one in the same frame interval
        self._start_time: float | None = None
        self._pending: tuple[np.ndarray, int] | None = None  # realtime: the newest frame and its slot
        self.error: str | None = None
        self._closed = False

    @property
    def recording(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.error is None

    def open(self) -> None:
        """Checks the output can be written (before the call starts, so the user hears it at once)."""
        from reenact_common.video_io import check_writable

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
        if not self.config.realtime:
            self._enqueue(frame, 1)
        else:
            self._place(frame)
        if self.error is not None:
            raise MediaError(self.error)

    def _place(self, frame: np.ndarray) -> None:
        """Realtime pacing: the frame takes the slot of its arrival time. The previous frame is written
        once a later slot begins, repeated over the slots nobody else arrived in."""
        now = self._clock()
        if self._start_time is None:
            self._start_time = now
        slot = int((now - self._start_time) * self.config.fps)
        if self._pending is not None:
            previous, previous_slot = self._pending
            if slot <= previous_slot:
                self.frames_replaced += 1
                slot = previous_slot
            else:
                self._enqueue(previous, slot - previous_slot)
        self._pending = (frame, slot)

    def _enqueue(self, frame: np.ndarray, count: int) -> None:
        item = (frame, count)
        try:
            if self.config.block_when_full:
                while self._thread.is_alive():
                    try:
                        self._queue.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
            else:
                self._queue.put_nowait(item)
        except queue.Full:
            self.frames_dropped += count

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
            item = self._queue.get()
            if item is _STOP:
                return
            if self.error is not None:
                continue  # drain
            frame, count = item
            try:
                for _ in range(count):
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
        if self._pending is not None and self._thread is not None:
            self._enqueue(self._pending[0], 1)  # the last frame, once (its interval ends with the call)
            self._pending = None
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
                "recording %s: %d frames written, %d dropped, %d replaced by newer ones%s",
                self.path,
                self.frames_written,
                self.frames_dropped,
                self.frames_replaced,
                f" (error: {self.error})" if self.error else "",
            )
