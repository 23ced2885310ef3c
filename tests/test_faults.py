"""Fault injection on the live pipeline: the call must go on, and the user must be told.

Already covered elsewhere (not repeated here; see docs/reliability.md): camera missing / unplugged /
corrupt frames / reconnect (test_capture.py), camera loss and recovery inside the pipeline, failing
sinks, engine exception without fallback (test_pipeline.py), virtual camera vanishing and recorder
disk full on the sink itself (test_sinks.py), FallbackEngine switching order (test_engines.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from reenact_app.capture import CameraSource, FakeVideoCapture, RetryPolicy, VideoFileSource
from reenact_app.engines.base import Engine, Keypoints, SourceState
from reenact_app.engines.select import EngineOptions, FallbackEngine
from reenact_common.errors import EngineError
from reenact_app.images import load_avatar_image
from reenact_app.pipeline import LivePipeline, PipelineConfig
from reenact_app.sinks import FakeVirtualCameraBackend, Recorder, RecorderConfig, VirtualCamera, VirtualCameraConfig
from reenact_app.tracking import prepare_avatar

REPO = Path(__file__).resolve().parent.parent
CLIP = "rizkiarm+LipNet/evaluation/samples/GRID/bbaf2n.mpg"  # 75 frames, 25 fps
FAST_RETRY = RetryPolicy(initial=0.05, factor=2.0, maximum=0.2, max_failed_reads=5, stall_timeout=0.5)


class FakeEngine(Engine):
    """Cheap engine double: output = inverted avatar crop; `fail` (callable(call_no) -> exception or None)
    injects a fault into animate()."""

    image_size = 256

    def __init__(self, name: str = "fake-gpu", fail=None):
        self.name, self.device, self.fail, self.calls, self.closed = name, "fake", fail, 0, False

    def _kp(self, image):
        m = image.reshape(-1, 3).mean(0) / 255.0
        return Keypoints((np.tile(m[:2], (10, 1)) + np.linspace(-0.5, 0.5, 20).reshape(10, 2)).astype(np.float32))

    def encode_source(self, image):
        return SourceState(image, self._kp(image), {"owner": self.name})

    def detect_keypoints(self, image):
        return self._kp(image)

    def animate(self, source, kp):
        self.calls += 1
        exc = self.fail(self.calls) if self.fail else None
        if exc is not None:
            raise exc
        assert source.tensors.get("owner") == self.name, "avatar not re-encoded for this engine"
        return 255 - source.image

    def close(self):
        self.closed = True


def oom_after(n: int):
    return lambda call: RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB") if call > n else None


@pytest.fixture(scope="module")
def avatar():
    return prepare_avatar(load_avatar_image(REPO / "assets/avatars/monalisa.jpg"), 256)


@pytest.fixture(autouse=True)
def _fake_vcam():
    FakeVirtualCameraBackend.reset()
    yield
    FakeVirtualCameraBackend.reset()


def _fallback(primary: Engine, spare: Engine | None) -> FallbackEngine:
    remaining = ("torch-cpu",) if spare is not None else ()
    return FallbackEngine(primary, remaining, model=None, options=EngineOptions(), builder=lambda *a: spare)


def test_engine_oom_mid_run_falls_back_with_visible_notice(clips_dir, avatar):
    primary, spare = FakeEngine("fake-gpu", oom_after(5)), FakeEngine("fake-cpu")
    engine = _fallback(primary, spare)
    heard = []
    engine.listeners.append(heard.append)
    vcam = VirtualCamera(VirtualCameraConfig(320, 240, 25, backend="reenact-fake"))
    states = []
    src = VideoFileSource(clips_dir / CLIP, realtime=False)
    with LivePipeline(src, engine, avatar, PipelineConfig(max_frames=15), sinks=[vcam],
                      on_frame=lambda f: states.append(f.state)) as pipe:
        assert pipe.wait(frames=15, timeout=60)
    assert states == ["live"] * 15  # no frame lost: the failing call was retried on the spare engine
    assert primary.closed and engine.active is spare and spare.calls == 10
    assert len(heard) == 1 and "CUDA out of memory" in heard[0] and "switched to fake-cpu" in heard[0]
    assert engine.notice == heard[0] and pipe.stats.errors == 0
    assert FakeVirtualCameraBackend.instances[-1].count == 15


def test_engine_failing_with_no_fallback_left_keeps_the_call_going(clips_dir, avatar):
    engine = _fallback(FakeEngine("fake-gpu", oom_after(3)), None)
    errors, states = [], []
    src = VideoFileSource(clips_dir / CLIP, realtime=False)
    cfg = PipelineConfig(max_frames=12, hold_timeout=0.0, fade_duration=0.01)
    with LivePipeline(src, engine, avatar, cfg, on_error=errors.append, on_frame=lambda f: states.append(f.state)) as pipe:
        assert pipe.wait(frames=12, timeout=60)
        assert pipe.running or pipe.stats.state == "done"
    assert states[:3] == ["live"] * 3 and len(states) == 12 and "live" not in states[4:]
    assert all(isinstance(e, EngineError) for e in errors) and len(errors) == 9
    assert any("no fallback engine is left" in m for m in pipe.stats.snapshot()["messages"])
    assert np.array_equal(pipe.latest.output, avatar.image)  # the still avatar, not a frozen or black frame


def test_reenact_live_prints_the_fallback_notice(clips_dir, tmp_path, monkeypatch, capsys):
    from reenact_app.cli import main
    from reenact_app.engines import select

    odd = tmp_path / "dossier avec espaces" / "Mona – é 写真.jpg"
    odd.parent.mkdir()
    odd.write_bytes((REPO / "assets/avatars/monalisa.jpg").read_bytes())
    monkeypatch.setattr(select, "create_engine",
                        lambda *a, **k: _fallback(FakeEngine("fake-gpu", oom_after(2)), FakeEngine("fake-cpu")))
    code = main(["live", "--driving", str(clips_dir / CLIP), "--avatar", str(odd), "--frames", "6", "--fast"])
    out = capsys.readouterr().out
    assert code == 0 and "notice: engine fallback:" in out and "CUDA out of memory" in out and "fake-cpu" in out


class GarbageCapture(FakeVideoCapture):
    """A camera driver gone bad: read() returns malformed frames or raises, between good frames."""

    BAD = [
        lambda: (True, None),
        lambda: (True, np.zeros((1, 1, 3), np.uint8)),
        lambda: (True, np.zeros((480, 640, 3), np.float32)),
        lambda: (True, np.zeros((480, 640, 4), np.uint8)),
        lambda: (True, np.zeros((480, 640, 3, 1), np.uint8)),
        lambda: (True, "not an array"),
        lambda: (_ for _ in ()).throw(OSError("VIDIOC_DQBUF: No such device")),
    ]

    def read(self):
        time.sleep(1 / 60)
        self._i += 1
        if self._i % 3:
            return self.BAD[self._i % len(self.BAD)]()
        return True, self._frames[self._i % len(self._frames)].copy()


def _bgr_frames(path: Path, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = [cap.read()[1] for _ in range(n)]
    cap.release()
    return frames


def test_camera_returning_garbage_never_reaches_the_model(clips_dir, avatar):
    frames = _bgr_frames(clips_dir / CLIP, 5)
    cam = CameraSource(0, retry=FAST_RETRY, capture_factory=lambda i: GarbageCapture(frames))
    seen = []
    with LivePipeline(cam, FakeEngine("fake"), avatar, PipelineConfig(read_timeout=0.1),
                      on_frame=lambda f: seen.append(f)) as pipe:
        assert pipe.wait(frames=20, timeout=30)
        assert pipe.running
    live = [f for f in seen if f.driving is not None]
    assert live and all(f.driving.shape == (288, 360, 3) and f.driving.dtype == np.uint8 for f in live)
    assert pipe.stats.errors == 0


class HangingCapture(FakeVideoCapture):
    """A driver whose read() blocks (no error, no frame) for `hang` s after `good` frames, then fails
    once, like a V4L2 select() timeout; later opens work normally."""

    def __init__(self, frames, good: int, hang: float):
        super().__init__(frames, delay=1 / 30)
        self.good, self.hang = good, hang

    def read(self):
        if self.good <= 0:
            time.sleep(self.hang)
            return False, None
        self.good -= 1
        return super().read()


def test_camera_that_stops_delivering_keeps_the_call_fed_and_recovers(clips_dir, avatar):
    frames = _bgr_frames(clips_dir / CLIP, 5)
    opens = {"n": 0}

    def factory(_index):
        opens["n"] += 1
        return HangingCapture(frames, good=10, hang=1.5) if opens["n"] == 1 else FakeVideoCapture(frames, delay=1 / 30)

    cam = CameraSource(0, retry=FAST_RETRY, capture_factory=factory)
    vcam = VirtualCamera(VirtualCameraConfig(320, 240, 25, backend="reenact-fake"))
    states = []
    cfg = PipelineConfig(read_timeout=0.1, hold_timeout=0.3, fade_duration=0.3)
    with LivePipeline(cam, FakeEngine("fake"), avatar, cfg, sinks=[vcam], on_frame=lambda f: states.append(f.state)) as pipe:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (cam.reconnects >= 1 and states[-1:] == ["live"]):
            time.sleep(0.05)
    first_gap = states.index("holding")
    assert "neutral" in states[first_gap:] and states[-1] == "live" and cam.reconnects >= 1
    assert FakeVirtualCameraBackend.instances[-1].count == len(states)  # a frame every tick, hang included


def test_truncated_video_in_a_looping_pipeline_and_until_its_end(clips_dir, avatar, tmp_path):
    data = (clips_dir / CLIP).read_bytes()
    cut = tmp_path / "cut mid-stream.mpg"
    cut.write_bytes(data[: len(data) * 2 // 5])
    looped = VideoFileSource(cut, realtime=False, loop=True)
    with LivePipeline(looped, FakeEngine("fake"), avatar, PipelineConfig(max_frames=80)) as pipe:
        assert pipe.wait(frames=80, timeout=60)  # longer than the readable part: it looped
    assert pipe.stats.errors == 0
    rec_path = tmp_path / "out.mp4"
    rec = Recorder(RecorderConfig(rec_path, fps=25, block_when_full=True))
    once = VideoFileSource(cut, realtime=False)
    with LivePipeline(once, FakeEngine("fake"), avatar, PipelineConfig(), sinks=[rec]) as pipe:
        pipe.wait(timeout=60)
    assert pipe.stats.state == "ended" and 0 < pipe.stats.frames_out < 75
    cap = cv2.VideoCapture(str(rec_path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == pipe.stats.frames_out  # the recording was finalised
    cap.release()


def test_virtual_camera_vanishes_then_comes_back(clips_dir, avatar):
    FakeVirtualCameraBackend.fail_after = 5
    src = VideoFileSource(clips_dir / CLIP, realtime=False, loop=True)
    with LivePipeline(src, FakeEngine("fake"), avatar, PipelineConfig(max_frames=40),
                      sinks=[VirtualCamera(VirtualCameraConfig(320, 240, 25, backend="reenact-fake"))]) as pipe:
        deadline = time.monotonic() + 20
        while pipe.sinks and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not pipe.sinks and any("stopped accepting frames" in m for m in pipe.stats.snapshot()["messages"])
        FakeVirtualCameraBackend.fail_after = None  # the device is back (module reloaded, OBS restarted)
        again = VirtualCamera(VirtualCameraConfig(320, 240, 25, backend="reenact-fake"))
        pipe.add_sink(again)
        assert pipe.wait(frames=40, timeout=30)
    assert again.frames_sent > 0 and FakeVirtualCameraBackend.instances[-1].count == again.frames_sent


def test_recording_into_a_full_disk_stops_recording_not_the_call(clips_dir, avatar):
    """The real encoder writing into /dev/full (ENOSPC on every write), inside a running pipeline."""
    import os

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    from reenact_common.video_io import VideoWriter

    def to_dev_full(path, fps, size):
        writer = VideoWriter.__new__(VideoWriter)  # skip the .mp4 name check, keep the real ffmpeg path
        writer.path, writer.fps, (writer.width, writer.height), writer.frames, writer.codec, writer._cv = (
            "/dev/full", fps, size, 0, "", None)
        writer._ffmpeg = writer._open_ffmpeg()
        if writer._ffmpeg is None:
            pytest.skip("imageio-ffmpeg unavailable")
        return writer

    rec = Recorder(RecorderConfig("/dev/full", fps=25, size=(640, 480), block_when_full=True), writer_factory=to_dev_full)
    vcam = VirtualCamera(VirtualCameraConfig(320, 240, 25, backend="reenact-fake"))
    src = VideoFileSource(clips_dir / CLIP, realtime=False, loop=True)
    with LivePipeline(src, FakeEngine("fake"), avatar, PipelineConfig(max_frames=150), sinks=[vcam, rec]) as pipe:
        assert pipe.wait(frames=150, timeout=90)
    messages = " | ".join(pipe.stats.snapshot()["messages"])
    assert "recording stopped" in messages and "Free disk space" in messages
    assert rec not in pipe.sinks and pipe.stats.frames_out == 150
    assert FakeVirtualCameraBackend.instances[-1].count == 150  # the call never noticed


def test_engine_failing_while_encoding_a_new_avatar(clips_dir, avatar):
    """Switching avatars when the engine throws in encode_source: reported, the old avatar stays."""

    class EncodeFails(FakeEngine):
        def encode_source(self, image):
            if getattr(self, "armed", False):
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            return super().encode_source(image)

    engine = EncodeFails("fake")
    src = VideoFileSource(clips_dir / CLIP, realtime=True, loop=True)
    with LivePipeline(src, engine, avatar, PipelineConfig()) as pipe:
        f0 = pipe.wait_frame(timeout=10)
        engine.armed = True
        pipe.set_avatar(load_avatar_image(REPO / "assets/avatars/gogol.jpg"))
        f1 = pipe.wait_frame(after=f0.index + 3, timeout=10)
        assert pipe.running and f1 is not None
    assert any("illegal memory access" in m for m in pipe.stats.snapshot()["messages"])
    assert f1.state == "live" and f1.output.shape == avatar.image.shape  # still the old avatar, not a mix
    assert np.array_equal(pipe._avatar.crop, avatar.crop)


@pytest.mark.gui
def test_gui_painting_cannot_drain_none_in_a_day(qapp):
    """Found by benchmarks/soak_gui.py: the preview's paintEvent lowers sys.getrefcount(None) by ~6 per
    view per frame (476 with the 468 keypoints drawn) until None is deallocated and the process aborts."""
    import sys

    from reenact_app.gui.app import create_application
    from reenact_app.gui.widgets.preview import ImageView
    from reenact_app.gui.worker import to_qimage

    create_application(offscreen=True)  # whatever protection the app installs at start-up
    view = ImageView("x")
    view.resize(400, 300)
    view.show_box = view.show_keypoints = True
    rgb = np.random.default_rng(0).integers(0, 255, (288, 360, 3), np.uint8)
    view.set_image(to_qimage(rgb), (10, 20, 200, 220), np.random.default_rng(1).random((468, 2)) * 300, True)
    view.grab()
    before = sys.getrefcount(None)
    for _ in range(20):
        view.grab()
    drain_per_paint = max(0.0, (before - sys.getrefcount(None)) / 20)
    assert sys.getrefcount(None) > drain_per_paint * 2 * 30 * 86_400  # two views, 30 fps, a whole day
