"""Virtual camera (real backend's missing-driver message, fake backend) and the mp4 recorder."""

from __future__ import annotations

import errno
import glob
import os
import platform
import time

import cv2
import numpy as np
import pytest

from reenact_app.compositor import letterbox
from reenact_common.errors import MediaError, VirtualCameraError
from reenact_app.sinks import (
    FakeVirtualCameraBackend,
    Recorder,
    RecorderConfig,
    VirtualCamera,
    VirtualCameraConfig,
    missing_driver_message,
)
from reenact_app.sinks.virtual_camera import MODPROBE_COMMAND

CLIP = "rizkiarm+LipNet/evaluation/samples/GRID/bbaf2n.mpg"


@pytest.fixture
def frames(clips_dir) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(clips_dir / CLIP))
    out = []
    while len(out) < 12:
        ok, f = cap.read()
        assert ok
        out.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    cap.release()
    return out


@pytest.fixture(autouse=True)
def _reset_fake():
    FakeVirtualCameraBackend.reset()
    yield
    FakeVirtualCameraBackend.reset()


def _has_loopback() -> bool:
    for name in glob.glob("/sys/class/video4linux/video*/name"):
        if "loopback" in open(name).read().lower() or "dummy" in open(name).read().lower():
            return True
    return False


@pytest.mark.skipif(platform.system() != "Linux" or _has_loopback(), reason="needs a Linux machine without v4l2loopback")
def test_real_backend_without_v4l2loopback_says_what_to_run(frames):
    cam = VirtualCamera(VirtualCameraConfig(640, 480, 25))  # the real, default code path
    with pytest.raises(VirtualCameraError) as info:
        cam.open()
    text = str(info.value)
    assert MODPROBE_COMMAND in text and "v4l2loopback" in text
    assert 'card_label="Reenact"' in text and "exclusive_caps=1" in text
    assert not cam.is_open
    with pytest.raises(VirtualCameraError):  # writing without a device reports the same, never crashes
        cam.write(frames[0])


def test_missing_driver_message_other_systems():
    for system in ("Windows", "Darwin"):
        assert "OBS" in missing_driver_message(system) and "modprobe" not in missing_driver_message(system)


def test_fake_backend_receives_letterboxed_rgb_frames(frames):
    cam = VirtualCamera(VirtualCameraConfig(640, 480, 25, backend="reenact-fake"))
    cam.open()
    for f in frames[:5]:
        cam.write(f)
    fake = FakeVirtualCameraBackend.instances[-1]
    assert fake.count == 5 and cam.frames_sent == 5 and cam.device == "/dev/video-fake"
    assert fake.frames[-1].shape == (480, 640, 3)
    assert np.array_equal(fake.frames[-1], letterbox(frames[4], 640, 480))
    cam.close()
    assert fake.closed


def test_fake_device_vanishing_raises_and_closes(frames):
    FakeVirtualCameraBackend.fail_after = 2
    cam = VirtualCamera(VirtualCameraConfig(320, 240, 25, backend="reenact-fake"))
    cam.write(frames[0])
    cam.write(frames[1])
    with pytest.raises(VirtualCameraError, match="stopped accepting frames"):
        cam.write(frames[2])
    assert not cam.is_open


def test_steady_camera_repeats_the_last_frame_at_its_rate_when_frames_come_slower(frames):
    """Frames written at 5 fps into a 40 fps steady camera: the device gets 40 frames a second (the newest
    one repeated), every written frame in order, no gap. A short real-time run: counts, not timings."""
    FakeVirtualCameraBackend.keep = 1000
    cam = VirtualCamera(VirtualCameraConfig(320, 240, 40, backend="reenact-fake", steady=True))
    written = frames[:6]
    start = time.monotonic()
    for f in written:
        cam.write(f)
        time.sleep(0.2)
    elapsed = time.monotonic() - start
    fake = FakeVirtualCameraBackend.instances[-1]
    received = list(fake.frames)
    cam.close()
    expected = elapsed * 40
    assert 0.75 * expected <= len(received) <= expected + 3, (len(received), expected)
    assert cam.frames_repeated >= len(received) - len(written) - cam.slots_missed
    boxed = [letterbox(f, 320, 240) for f in written]
    order = [next(i for i, b in enumerate(boxed) if np.array_equal(r, b)) for r in received]
    assert order == sorted(order) and set(order) == set(range(len(written)))  # each frame, in order
    assert fake.closed


def test_steady_camera_reports_a_vanished_device_on_the_next_write(frames):
    FakeVirtualCameraBackend.fail_after = 3
    cam = VirtualCamera(VirtualCameraConfig(320, 240, 50, backend="reenact-fake", steady=True))
    cam.write(frames[0])
    time.sleep(0.3)  # the sender's 4th send fails
    with pytest.raises(VirtualCameraError, match="stopped accepting frames"):
        cam.write(frames[1])
    assert not cam.is_open
    cam.close()


def test_letterbox_keeps_aspect():
    img = np.full((100, 200, 3), 255, np.uint8)
    out = letterbox(img, 640, 480)
    assert out.shape == (480, 640, 3)
    rows = np.where(out[:, 320, 0] == 255)[0]
    assert rows.min() == 80 and rows.max() == 399  # 640x320 centred, black bars top and bottom


def _decode(path):
    cap = cv2.VideoCapture(str(path))
    n, size = 0, None
    while True:
        ok, f = cap.read()
        if not ok:
            break
        n += 1
        size = f.shape
    cap.release()
    return n, size


def test_recorder_writes_decodable_mp4(frames, tmp_path):
    path = tmp_path / "out put é.mp4"  # spaces and non-ASCII in the path
    rec = Recorder(RecorderConfig(path, fps=25, block_when_full=True))
    rec.open()
    for f in frames:
        rec.write(f)
    rec.close()
    assert rec.error is None and rec.frames_written == 12
    assert _decode(path) == (12, (288, 360, 3))


class _Clock:
    """A settable clock for realtime pacing (arrival times of a slow live pipeline)."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_realtime_recorder_keeps_wall_time(frames, tmp_path):
    """A 10 fps pipeline recorded at 25 fps: frames are repeated to fill their time (not played 2.5x fast),
    the newest of two in one frame interval wins, and the mp4 lasts as long as the call."""
    arrivals = [0.0, 0.10, 0.11, 0.20, 0.21]  # seconds after the first frame -> slots 0, 2, 2, 5, 5
    written = []

    class Collect:
        def __init__(self, *a):
            pass

        def write(self, rgb):
            written.append(next(i for i, f in enumerate(frames) if np.array_equal(f, rgb)))

        def close(self):
            pass

    for factory, path in ((lambda *a: Collect(), tmp_path / "ids.mp4"), (None, tmp_path / "real.mp4")):
        clock = _Clock()
        rec = Recorder(RecorderConfig(path, fps=25, realtime=True, block_when_full=True), factory, clock=clock)
        start = clock.now
        for i, t in enumerate(arrivals):
            clock.now = start + t
            rec.write(frames[i])
        rec.close()
        assert rec.error is None and rec.frames_written == 6 and rec.frames_replaced == 2
    assert written == [0, 0, 2, 2, 2, 4]
    assert _decode(tmp_path / "real.mp4") == (6, (288, 360, 3))  # 6 frames at 25 fps = 0.24 s of call


def test_recorder_side_by_side(frames, tmp_path):
    path = tmp_path / "sbs.mp4"
    rec = Recorder(RecorderConfig(path, fps=25, side_by_side=True, block_when_full=True))
    out = cv2.resize(frames[0], (256, 256))
    for f in frames[:4]:
        rec.write(out, driving=f)
    rec.close()
    n, shape = _decode(path)
    assert n == 4 and shape == (256, 256 + 320, 3)  # driver scaled to 256 high (320 wide) + output


def test_recorder_unwritable_path_is_reported(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        Recorder(RecorderConfig(tmp_path / "missing" / "x.mp4")).open()
    with pytest.raises(MediaError, match="is a directory"):
        Recorder(RecorderConfig(tmp_path)).open()
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        if os.access(ro, os.W_OK):  # running as root: permissions don't apply
            pytest.skip("permission checks don't apply to root")
        with pytest.raises(MediaError, match="permission"):
            Recorder(RecorderConfig(ro / "x.mp4")).open()
    finally:
        os.chmod(ro, 0o700)


class _DiskFullWriter:
    """A writer that fills the disk after `limit` frames (fault injection)."""

    def __init__(self, limit: int):
        self.limit, self.n, self.closed = limit, 0, False

    def write(self, frame):
        if self.n >= self.limit:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.n += 1

    def close(self):
        self.closed = True


def test_recorder_disk_full_stops_with_message(frames, tmp_path):
    writer = _DiskFullWriter(3)
    rec = Recorder(RecorderConfig(tmp_path / "full.mp4", block_when_full=True), writer_factory=lambda *a: writer)
    with pytest.raises(MediaError, match="No space left"):
        for _ in range(50):
            rec.write(frames[0])
            time.sleep(0.01)
    rec.close()
    assert rec.frames_written == 3 and writer.closed and "Free disk space" in rec.error


def test_recorder_real_disk_full_device(frames):
    """The real encoder writing into /dev/full (every write fails with ENOSPC)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    from reenact_common.video_io import VideoWriter

    def to_dev_full(path, fps, size):
        w = VideoWriter.__new__(VideoWriter)  # bypass the .mp4 name check, keep the real ffmpeg path
        w.path, w.fps, (w.width, w.height), w.frames, w.codec, w._cv = "/dev/full", fps, size, 0, "", None
        w._ffmpeg = w._open_ffmpeg()
        if w._ffmpeg is None:
            pytest.skip("imageio-ffmpeg unavailable")
        return w

    rec = Recorder(RecorderConfig("/dev/full", fps=25, block_when_full=True), writer_factory=to_dev_full)
    big = cv2.resize(frames[0], (640, 480))
    with pytest.raises(MediaError):
        for i in range(400):
            rec.write(np.roll(big, i, axis=1))
    rec.close()
    print(rec.error)
    assert rec.error and "Free disk space" in rec.error
