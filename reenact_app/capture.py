"""Frame sources: webcam, video file, image folder, behind one interface.

Every source runs its own thread and keeps only the newest frame: a consumer that falls behind gets
the latest picture, never a queue of old ones (queued frames are pure latency in a video call).

    src = open_source("0")                  # camera index, video path or image folder
    src.start()
    frame = src.read(timeout=1.0)           # newest frame not yet returned by read(), or None
    frame.image, frame.index, frame.captured_at, frame.media_time
    src.status                              # SourceStatus(state, message): running / reconnecting / ...
    src.stop()

Cameras that are missing, busy or unplugged never raise into the caller: the thread reports
"reconnecting" with the reason and retries with exponential back-off until stopped; the pipeline
keeps showing the last good frame meanwhile. `FakeVideoCapture` is a scriptable stand-in for
cv2.VideoCapture used by tests (missing device, dropped reads, corrupt frames, unplug and replug).
"""

from __future__ import annotations

import glob
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

from reenact_common.errors import CameraError, MediaError
from reenact_common.video_io import IMAGE_SUFFIXES

log = logging.getLogger(__name__)



@dataclass
class Frame:
    image: np.ndarray  # uint8 RGB HxWx3
    index: int  # counts frames published by this source (0, 1, ...)
    captured_at: float  # time.monotonic() when grabbed: end-to-end latency is measured from here
    media_time: float  # seconds on the source's own clock (video pts, or time since start): drives filters


@dataclass
class SourceStatus:
    state: str = "idle"  # idle, starting, running, reconnecting, ended, failed, stopped
    message: str = ""
    since: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return self.state in ("starting", "running")


@dataclass
class RetryPolicy:
    """Back-off for cameras: first retry after `initial` s, doubling up to `maximum` s."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 5.0
    max_failed_reads: int = 15  # consecutive failed/corrupt reads before the device is reopened
    stall_timeout: float = 2.0  # no good frame for this long: reopen the device


class FrameSource:
    """Base: thread management, newest-frame handoff and status. Subclasses implement `_loop`."""

    name = "source"

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._read_index = -1
        self._count = 0
        self.frames_dropped = 0  # published frames nobody read before a newer one replaced them
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = SourceStatus()
        self._status_listeners: list[Callable[[SourceStatus], None]] = []
        self._lockstep = False  # files read as fast as consumed: every frame, no drops
        self.fps: float = 0.0
        self.frame_size: tuple[int, int] | None = None  # (width, height) once known

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "FrameSource":
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._set_status("starting", f"opening {self.name}")
        self._thread = threading.Thread(target=self._guarded_loop, name=f"reenact-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("%s thread did not stop within %.1f s", self.name, timeout)
        if self._status.state not in ("ended", "failed"):
            self._set_status("stopped", "")

    close = stop

    def __enter__(self) -> "FrameSource":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- status -------------------------------------------------------------------------------
    @property
    def status(self) -> SourceStatus:
        return self._status

    def add_status_listener(self, fn: Callable[[SourceStatus], None]) -> None:
        """`fn(status)` runs on the source thread whenever the state or message changes."""
        self._status_listeners.append(fn)

    def _set_status(self, state: str, message: str) -> None:
        if state == self._status.state and message == self._status.message:
            return
        self._status = SourceStatus(state, message)
        level = logging.WARNING if state in ("reconnecting", "failed") else logging.INFO
        log.log(level, "%s: %s%s", self.name, state, f": {message}" if message else "")
        for fn in list(self._status_listeners):
            try:
                fn(self._status)
            except Exception:  # noqa: BLE001 - a listener must not kill capture
                log.exception("status listener failed")
        with self._cond:
            self._cond.notify_all()

    # -- frames -------------------------------------------------------------------------------
    def _publish(self, image: np.ndarray, media_time: float, captured_at: float | None = None) -> Frame:
        frame = Frame(image, self._count, time.monotonic() if captured_at is None else captured_at, media_time)
        with self._cond:
            if self._latest is not None and self._latest.index > self._read_index:
                self.frames_dropped += 1
            self._latest = frame
            self._count += 1
            self.frame_size = (image.shape[1], image.shape[0])
            self._cond.notify_all()
        return frame

    def latest(self) -> Frame | None:
        """The newest frame (it may have been returned before)."""
        with self._cond:
            return self._latest

    def read(self, timeout: float | None = 1.0) -> Frame | None:
        """The newest frame not yet returned by read(); waits up to `timeout` s. None on timeout or
        when the source has ended/stopped with nothing new."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._latest is not None and self._latest.index > self._read_index:
                    self._read_index = self._latest.index
                    self._cond.notify_all()  # lockstep producers wait for this
                    if self._lockstep:  # decoded ahead while the consumer was busy: "captured" now
                        self._latest.captured_at = time.monotonic()
                    return self._latest
                if self._stop.is_set() or self._status.state in ("ended", "failed"):
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def _pace(self, realtime: bool, t0: float, media_time: float) -> bool:
        """Hold the next frame until its media time (realtime) or until the last one was read (lockstep).
        False when the source is being stopped meanwhile."""
        if realtime:
            wait = t0 + media_time - time.monotonic()
            return not (wait > 0 and self._stop.wait(wait))
        self._wait_consumed()
        return not self._stop.is_set()

    def _wait_consumed(self) -> None:
        """Lockstep mode: block the producer until the last frame was read (or stop)."""
        with self._cond:
            while not self._stop.is_set() and self._latest is not None and self._latest.index > self._read_index:
                self._cond.wait(0.1)

    @property
    def ended(self) -> bool:
        return self._status.state in ("ended", "failed")

    @property
    def frames_captured(self) -> int:
        return self._count

    # -- thread body --------------------------------------------------------------------------
    def _guarded_loop(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # noqa: BLE001 - report, never crash the app
            log.exception("%s crashed", self.name)
            self._set_status("failed", f"{type(exc).__name__}: {exc}")

    def _loop(self) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# Camera


@dataclass
class CameraInfo:
    index: int
    name: str
    path: str = ""


def list_cameras(max_index: int = 8, probe: bool = False) -> list[CameraInfo]:
    """Available cameras. On Linux from /dev/video* and sysfs names (instant; no device is opened)
    unless `probe`; elsewhere by opening indices 0..max_index-1 briefly."""
    cams: list[CameraInfo] = []
    devices = sorted(glob.glob("/dev/video*"), key=lambda p: int(p[10:]) if p[10:].isdigit() else 999)
    if devices and not probe:
        for dev in devices:
            idx = dev[10:]
            if not idx.isdigit():
                continue
            name_file = Path(f"/sys/class/video4linux/video{idx}/name")
            name = name_file.read_text().strip() if name_file.exists() else f"Camera {idx}"
            if "loopback" in name.lower() or "reenact" in name.lower():
                continue  # our own virtual camera output is not a driving source
            cams.append(CameraInfo(int(idx), name, dev))
        return cams
    if os.name == "posix" and not devices and not probe:
        return cams
    for i in range(max_index):
        cap = cv2.VideoCapture(i)
        try:
            if cap.isOpened():
                cams.append(CameraInfo(i, f"Camera {i}"))
        finally:
            cap.release()
    return cams


class CameraSource(FrameSource):
    """A webcam through OpenCV VideoCapture, with reconnect on loss.

    `capture_factory(index)` returns a VideoCapture-like object (isOpened/read/set/get/release); tests
    pass a `FakeVideoCapture` factory to inject failures.
    """

    def __init__(
        self,
        index: int = 0,
        width: int | None = 640,
        height: int | None = 480,
        fps: float | None = 30,
        retry: RetryPolicy | None = None,
        capture_factory: Callable[[int], object] | None = None,
    ):
        super().__init__()
        self.index = index
        self.name = f"camera {index}"
        self.requested = (width, height, fps)
        self.retry = retry or RetryPolicy()
        self._factory = capture_factory or cv2.VideoCapture
        self.reconnects = 0

    def _open(self):
        cap = self._factory(self.index)
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            raise CameraError(
                f"camera {self.index} is not available (not connected, or in use by another application)"
            )
        width, height, fps = self.requested
        try:
            if width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            if height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            if fps:
                cap.set(cv2.CAP_PROP_FPS, fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # don't let the driver queue stale frames
            self.fps = float(cap.get(cv2.CAP_PROP_FPS) or fps or 30.0)
        except Exception:  # noqa: BLE001 - settings are best effort
            self.fps = float(fps or 30.0)
        return cap

    def _loop(self) -> None:
        delay = self.retry.initial
        t_start = time.monotonic()
        opened_once = False
        while not self._stop.is_set():
            try:
                cap = self._open()
            except Exception as exc:  # noqa: BLE001
                self._set_status("reconnecting", f"{exc}; retrying in {delay:.1f} s")
                if self._stop.wait(delay):
                    break
                delay = min(delay * self.retry.factor, self.retry.maximum)
                continue
            if opened_once:
                self.reconnects += 1
            opened_once = True
            self._set_status("running", f"{self.name} open")
            failures, last_good = 0, time.monotonic()
            try:
                while not self._stop.is_set():
                    try:
                        ok, bgr = cap.read()
                    except Exception as exc:  # noqa: BLE001 - drivers do throw
                        ok, bgr = False, None
                        log.debug("%s read raised %s", self.name, exc)
                    if ok and _valid_frame(bgr):
                        failures, last_good = 0, time.monotonic()
                        delay = self.retry.initial
                        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if bgr.ndim == 3 else cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
                        now = time.monotonic()
                        self._publish(rgb, now - t_start, now)
                        if self._status.state != "running":
                            self._set_status("running", f"{self.name} open")
                        continue
                    failures += 1
                    stalled = time.monotonic() - last_good > self.retry.stall_timeout
                    if failures >= self.retry.max_failed_reads or stalled:
                        self._set_status(
                            "reconnecting", f"{self.name} stopped delivering frames (unplugged?); reopening"
                        )
                        break
                    self._stop.wait(0.01)
            finally:
                try:
                    cap.release()
                except Exception:  # noqa: BLE001
                    pass
        log.debug("%s thread exits", self.name)


def _read_bgr(path: Path) -> np.ndarray | None:
    """cv2.imread fails on non-ASCII paths on Windows; reading the bytes ourselves works everywhere."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    return cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None


def _valid_frame(img) -> bool:
    return (
        isinstance(img, np.ndarray)
        and img.dtype == np.uint8
        and img.ndim in (2, 3)
        and img.shape[0] >= 8
        and img.shape[1] >= 8
        and (img.ndim == 2 or img.shape[2] == 3)
    )


class FakeVideoCapture:
    """A cv2.VideoCapture stand-in that plays `frames` (BGR) and follows a fault script.

    script: per open() call, a list of actions consumed one per read(); when it runs out the frames
    play normally. Actions: "ok", "fail" (read returns False), "corrupt" (returns a 0x0 array),
    "unplug" (this and all later reads fail until reopened). `available(opens)` decides whether the
    n-th open succeeds (missing/busy camera). Shared `state` dict lets a test count opens.
    """

    def __init__(
        self,
        frames: list[np.ndarray],
        open_ok: bool = True,
        script: Iterable[str] = (),
        fps: float = 30.0,
        delay: float = 0.0,
    ):
        self._frames = frames
        self._ok = open_ok
        self._script = list(script)
        self._i = 0
        self._fps = fps
        self._delay = delay
        self._unplugged = False
        self.released = False

    @classmethod
    def factory(
        cls,
        frames: list[np.ndarray],
        available: Callable[[int], bool] = lambda n: True,
        scripts: Callable[[int], Iterable[str]] = lambda n: (),
        fps: float = 30.0,
        delay: float = 1 / 60,
        state: dict | None = None,
    ) -> Callable[[int], "FakeVideoCapture"]:
        state = state if state is not None else {}
        state.setdefault("opens", 0)

        def make(_index: int) -> FakeVideoCapture:
            n = state["opens"]
            state["opens"] += 1
            return cls(frames, available(n), scripts(n), fps, delay)

        return make

    def isOpened(self) -> bool:  # noqa: N802 - cv2 API
        return self._ok and not self.released

    def set(self, prop, value) -> bool:
        return True

    def get(self, prop) -> float:
        return self._fps if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        if self._delay:
            time.sleep(self._delay)
        if not self.isOpened() or self._unplugged:
            return False, None
        action = self._script.pop(0) if self._script else "ok"
        if action == "unplug":
            self._unplugged = True
            return False, None
        if action == "fail":
            return False, None
        if action == "corrupt":
            return True, np.zeros((0, 0, 3), np.uint8)
        frame = self._frames[self._i % len(self._frames)]
        self._i += 1
        return True, frame.copy()

    def release(self) -> None:
        self.released = True


# ---------------------------------------------------------------------------------------------
# Files


class VideoFileSource(FrameSource):
    """A video file. realtime=True paces frames at the file's fps (as a camera would deliver them,
    dropping what the consumer can't keep up with); realtime=False hands over every frame as fast as
    the consumer takes them (benchmarks, offline rendering). loop=True restarts at the end."""

    def __init__(self, path: str | os.PathLike, loop: bool = False, realtime: bool = True, max_frames: int | None = None):
        super().__init__()
        self.path = Path(path)
        self.name = f"video {self.path.name}"
        self.loop = loop
        self.realtime = realtime
        self._lockstep = not realtime
        self.max_frames = max_frames
        if not self.path.is_file():
            raise MediaError(f"video file not found: {self.path}")
        cap = cv2.VideoCapture(str(self.path))
        try:
            if not cap.isOpened():
                raise MediaError(f"can't open video {self.path}: not a video OpenCV/FFmpeg can read")
            self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0) or 25.0
            if not 1 <= self.fps <= 240:
                self.fps = 25.0
            self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            self.frame_size = (w, h) if w and h else None
        finally:
            cap.release()

    def _loop(self) -> None:
        period = 1.0 / self.fps
        published = 0
        offset = 0.0  # media time of the current loop's first frame
        t0 = time.monotonic()
        while not self._stop.is_set():
            cap = cv2.VideoCapture(str(self.path))
            n = 0
            self._set_status("running", self.name)
            try:
                while not self._stop.is_set():
                    if self.max_frames is not None and published >= self.max_frames:
                        self._set_status("ended", f"{self.name}: {published} frames")
                        return
                    ok, bgr = cap.read()
                    if not ok or not _valid_frame(bgr):
                        break
                    media_time = offset + n * period
                    if not self._pace(self.realtime, t0, media_time):
                        return
                    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if bgr.ndim == 3 else cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
                    self._publish(rgb, media_time)
                    n += 1
                    published += 1
            finally:
                cap.release()
            if n == 0:
                self._set_status("failed", f"{self.name}: no readable frames (corrupt or truncated file)")
                return
            if not self.loop:
                if self.frame_count and n < self.frame_count - 1:
                    log.warning("%s ended after %d of %d frames (truncated file?)", self.name, n, self.frame_count)
                self._set_status("ended", f"{self.name}: {published} frames")
                return
            offset += n * period


class ImageFolderSource(FrameSource):
    """Images of a folder in name order, at `fps` (realtime) or as fast as consumed."""

    def __init__(self, folder: str | os.PathLike, fps: float = 25.0, loop: bool = False, realtime: bool = True):
        super().__init__()
        self.folder = Path(folder)
        self.name = f"folder {self.folder.name}"
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if self.folder.is_dir() else []
        if not self.files:
            raise MediaError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {self.folder}")
        self.fps, self.loop, self.realtime = float(fps), loop, realtime
        self._lockstep = not realtime

    def _loop(self) -> None:
        period = 1.0 / self.fps
        t0 = time.monotonic()
        k = 0
        while not self._stop.is_set():
            good = 0
            for path in self.files:
                if self._stop.is_set():
                    return
                bgr = _read_bgr(path)
                if not _valid_frame(bgr):
                    log.warning("skipping unreadable image %s", path)
                    continue
                good += 1
                media_time = k * period
                if not self._pace(self.realtime, t0, media_time):
                    return
                self._publish(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), media_time)
                k += 1
            if not self.loop or good == 0:
                self._set_status("ended" if good else "failed", f"{self.name}: {k} frames")
                return


def open_source(spec: str | int, loop: bool = False, realtime: bool = True, **camera_kwargs) -> FrameSource:
    """"0"/0 -> camera 0; a folder -> ImageFolderSource; a file -> VideoFileSource."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return CameraSource(int(spec), **camera_kwargs)
    path = Path(spec)
    if path.is_dir():
        return ImageFolderSource(path, loop=loop, realtime=realtime)
    if path.is_file():
        return VideoFileSource(path, loop=loop, realtime=realtime)
    raise MediaError(f"driving source not found: {spec} (give a camera index like 0, a video file or an image folder)")
