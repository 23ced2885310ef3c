"""Virtual camera output through pyvirtualcam (what Zoom, Meet, Teams... see as a webcam).

The frame is letterboxed to a fixed size (apps expect a constant resolution) and sent as RGB.
With `steady` (what live calls use) a sender thread sends the newest frame at the camera's rate,
repeating it while the model is slower, so the call sees a steady frame rate and never a gap; a frame
written faster than the rate replaces the one waiting (the newest wins), as the recorder's pacing does.
Linux needs the v4l2loopback kernel module; Windows and macOS need OBS Studio's virtual camera.
When the driver is missing, `open()` raises VirtualCameraError with exactly what to run; the preview
keeps going.

`FakeVirtualCameraBackend` is registered with pyvirtualcam as backend "reenact-fake": tests (and the GUI
tests) go through the real pyvirtualcam.Camera code path and can inspect the frames that arrived or
make the device vanish after N frames.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from reenact_app.compositor import letterbox
from reenact_common.errors import VirtualCameraError
from reenact_app.sinks import Sink

log = logging.getLogger(__name__)

MODPROBE_COMMAND = 'sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label="Reenact"'
FAKE_BACKEND = "reenact-fake"


def missing_driver_message(system: str | None = None, detail: str = "") -> str:
    """What the user must do to get a virtual camera on this OS."""
    system = system or platform.system()
    if system == "Linux":
        msg = (
            "Virtual camera unavailable: the v4l2loopback kernel module is not loaded (no loopback "
            f"/dev/video device). Create one with:\n  {MODPROBE_COMMAND}\n"
            "(install the module first if needed: sudo apt install v4l2loopback-dkms). "
            "exclusive_caps=1 is needed for Chrome and Zoom to list the camera. The preview keeps running."
        )
    else:
        msg = (
            f"Virtual camera unavailable on {system}: install OBS Studio (28 or newer), open it once and "
            "click 'Start Virtual Camera' so its driver is registered, then stop it in OBS and try "
            "again. The preview keeps running."
        )
    if detail:
        msg += f"\n(pyvirtualcam: {detail.strip()})"
    return msg


@dataclass
class VirtualCameraConfig:
    width: int = 1280
    height: int = 720
    fps: float = 30.0
    device: str | None = None  # e.g. /dev/video10; None = first loopback device
    backend: str | None = None  # pyvirtualcam backend; None = the platform's real one; "reenact-fake" in tests
    mirror: bool = False  # apps usually mirror the local preview themselves; leave off
    # True: a sender thread sends the newest frame every 1/fps s (live calls: a steady rate even when
    # the model is slower, the last frame repeated); False: one frame sent per write (tests, offline).
    steady: bool = False


def default_backend() -> str:
    return "v4l2loopback" if platform.system() == "Linux" else "obs"


class VirtualCamera(Sink):
    """A pyvirtualcam camera fed with letterboxed RGB frames."""

    name = "virtual camera"

    def __init__(self, config: VirtualCameraConfig | None = None, clock: Callable[[], float] = time.monotonic):
        self.config = config or VirtualCameraConfig()
        self._cam = None
        self.frames_sent = 0
        self.frames_repeated = 0  # steady: sends of a frame already sent (the model was slower)
        self.slots_missed = 0  # steady: frame slots skipped because the sender itself was stalled
        self.device: str | None = None
        self._clock = clock
        self._latest: np.ndarray | None = None
        self._latest_lock = threading.Lock()
        self._sender: threading.Thread | None = None
        self._stop = threading.Event()
        self._error: str | None = None

    @property
    def is_open(self) -> bool:
        return self._cam is not None

    def open(self) -> None:
        if self._cam is not None:
            return
        try:
            import pyvirtualcam
        except ImportError as exc:
            raise VirtualCameraError("pyvirtualcam is not installed: pip install pyvirtualcam") from exc
        register_fake_backend()
        c = self.config
        # Name the platform's backend explicitly: with backend=None pyvirtualcam would also try the fake.
        backend = c.backend or default_backend()
        try:
            self._cam = pyvirtualcam.Camera(
                c.width, c.height, c.fps, fmt=pyvirtualcam.PixelFormat.RGB, device=c.device, backend=backend
            )
        except Exception as exc:  # pyvirtualcam raises RuntimeError with one line per backend
            text = str(exc)
            if c.device and "does not exist" in text:
                raise VirtualCameraError(
                    f"Virtual camera device {c.device} does not exist. " + missing_driver_message(detail=text)
                ) from exc
            if "busy" in text.lower() or "in use" in text.lower():
                raise VirtualCameraError(
                    f"Virtual camera is in use by another program ({text.strip()}). Close it or pick another device."
                ) from exc
            raise VirtualCameraError(missing_driver_message(detail=text)) from exc
        self.device = self._cam.device
        log.info("virtual camera started: %s (%dx%d @ %.0f fps)", self.device, c.width, c.height, c.fps)

    def write(self, image: np.ndarray, driving: np.ndarray | None = None) -> None:
        if self._error is not None:
            raise VirtualCameraError(self._error)
        if self._cam is None:
            self.open()
        frame = letterbox(image, self.config.width, self.config.height)
        if self.config.mirror:
            frame = frame[:, ::-1]
        frame = np.ascontiguousarray(frame)
        if not self.config.steady:
            self._send(frame)
            return
        if frame is image:
            frame = frame.copy()  # the caller may reuse its buffer while the sender still holds this one
        with self._latest_lock:
            self._latest = frame
        if self._sender is None:
            self._stop.clear()
            self._sender = threading.Thread(target=self._send_steadily, name="reenact-vcam", daemon=True)
            self._sender.start()

    def _send(self, frame: np.ndarray) -> None:
        try:
            self._cam.send(frame)
        except Exception as exc:  # noqa: BLE001 - device unplugged / module removed mid-stream
            self._error = (
                f"Virtual camera {self.device} stopped accepting frames ({exc}); start it again once the "
                "device is back."
            )
            self._close_camera()
            raise VirtualCameraError(self._error) from exc
        self._error = None
        self.frames_sent += 1

    def _send_steadily(self) -> None:
        """Sender thread: the newest frame at every 1/fps slot. A stall longer than a slot (the machine
        busy) skips the missed slots instead of sending a burst; a send failure is reported by the next
        write()."""
        period = 1.0 / max(1e-3, self.config.fps)
        due = self._clock()
        last_sent = None
        while not self._stop.is_set():
            wait = due - self._clock()
            if wait > 0 and self._stop.wait(wait):
                break
            with self._latest_lock:
                frame = self._latest
            try:
                self._send(frame)
            except VirtualCameraError:
                log.error(self._error)
                return
            if frame is last_sent:
                self.frames_repeated += 1
            last_sent = frame
            due += period
            behind = self._clock() - due
            if behind > period:
                missed = int(behind / period)
                self.slots_missed += missed
                due += missed * period

    def close(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            self._stop.set()
            if sender is not threading.current_thread():
                sender.join(5.0)
        self._close_camera()

    def _close_camera(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            try:
                cam.close()
            except Exception:  # noqa: BLE001
                log.debug("virtual camera close failed", exc_info=True)
            log.info("virtual camera stopped after %d frames (%d repeats, %d slots missed)", self.frames_sent,
                     self.frames_repeated, self.slots_missed)


class FakeVirtualCameraBackend:
    """A pyvirtualcam backend that keeps frames in memory instead of a device.

    Class attributes control faults for the next instances: `fail_open` (message) makes opening fail,
    `fail_after` (int) makes send() raise after that many frames (device vanished). `instances` lists
    every camera opened, newest last. Frames are kept up to `keep` (memory stays bounded in soaks).
    """

    instances: list["FakeVirtualCameraBackend"] = []
    fail_open: str | None = None
    fail_after: int | None = None
    keep: int = 64
    _lock = threading.Lock()

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int, device: str | None, **kw):
        if FakeVirtualCameraBackend.fail_open:
            raise RuntimeError(FakeVirtualCameraBackend.fail_open)
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self._device = device or "/dev/video-fake"
        self.frames: list[np.ndarray] = []
        self.count = 0
        self.closed = False
        self.fail_after = FakeVirtualCameraBackend.fail_after
        with FakeVirtualCameraBackend._lock:
            FakeVirtualCameraBackend.instances.append(self)

    @classmethod
    def reset(cls) -> None:
        cls.instances, cls.fail_open, cls.fail_after, cls.keep = [], None, None, 64

    def send(self, frame: np.ndarray) -> None:
        if self.fail_after is not None and self.count >= self.fail_after:
            raise RuntimeError("device vanished (fake)")
        self.count += 1
        self.frames.append(np.array(frame, copy=True).reshape(self.height, self.width, -1))
        if len(self.frames) > self.keep:
            del self.frames[0]

    def close(self) -> None:
        self.closed = True

    def device(self) -> str:
        return self._device

    def native_fourcc(self):
        return self.fourcc


def register_fake_backend() -> None:
    """Make backend="reenact-fake" available to pyvirtualcam.Camera (idempotent)."""
    import pyvirtualcam

    pyvirtualcam.register_backend(FAKE_BACKEND, FakeVirtualCameraBackend)
