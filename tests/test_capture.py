"""Frame sources: newest-frame handoff, pacing, looping, image folders, camera loss and recovery."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from reenact_app.capture import (
    CameraSource,
    FakeVideoCapture,
    ImageFolderSource,
    RetryPolicy,
    VideoFileSource,
    list_cameras,
    open_source,
)
from reenact_common.errors import MediaError
from tests.conftest import bgr_frames

CLIP = "rizkiarm+LipNet/evaluation/samples/GRID/bbaf2n.mpg"  # 75 frames, 25 fps, 360x288




def test_video_file_every_frame_when_not_realtime(clips_dir):
    with VideoFileSource(clips_dir / CLIP, realtime=False) as src:
        frames = []
        while (f := src.read(timeout=5.0)) is not None:
            frames.append(f)
    assert len(frames) == 75 and src.frames_dropped == 0
    assert [f.index for f in frames] == list(range(75))
    assert frames[0].image.shape == (288, 360, 3) and frames[0].image.dtype == np.uint8
    assert np.allclose(np.diff([f.media_time for f in frames]), 1 / 25)
    assert src.status.state in ("ended", "stopped")


def test_realtime_source_hands_out_newest_frame_only(clips_dir):
    with VideoFileSource(clips_dir / CLIP, realtime=True) as src:
        first = src.read(timeout=5.0)
        time.sleep(0.4)  # a slow consumer: ~10 frames arrive meanwhile
        newest = src.read(timeout=1.0)
        age = time.monotonic() - newest.captured_at
    assert newest.index - first.index >= 5  # stale frames were skipped, not queued
    assert src.frames_dropped >= 4
    assert age < 0.1  # what we got is fresh


def test_video_loop_keeps_media_time_increasing(clips_dir):
    with VideoFileSource(clips_dir / CLIP, realtime=False, loop=True, max_frames=100) as src:
        times = []
        while (f := src.read(timeout=5.0)) is not None:
            times.append(f.media_time)
    assert len(times) == 100 and np.all(np.diff(times) > 0)


def test_image_folder_skips_unreadable_files(clips_dir, tmp_path):
    for i, f in enumerate(bgr_frames(clips_dir / CLIP, 4)):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), f)
    (tmp_path / "002b.jpg").write_bytes(b"not an image")
    with ImageFolderSource(tmp_path, realtime=False) as src:
        got = []
        while (f := src.read(timeout=5.0)) is not None:
            got.append(f)
    assert len(got) == 4


def test_missing_inputs_raise_media_error(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        open_source(str(tmp_path / "nope.mp4"))
    with pytest.raises(MediaError, match="no images"):
        ImageFolderSource(tmp_path)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(MediaError):
        VideoFileSource(bad)


def test_truncated_video_ends_cleanly(clips_dir, tmp_path):
    data = (clips_dir / CLIP).read_bytes()
    cut = tmp_path / "cut.mpg"
    cut.write_bytes(data[: len(data) // 3])
    with VideoFileSource(cut, realtime=False) as src:
        n = 0
        while src.read(timeout=5.0) is not None:
            n += 1
    assert 0 < n < 75 and src.status.state in ("ended", "stopped")


FAST_RETRY = RetryPolicy(initial=0.05, factor=2.0, maximum=0.2, max_failed_reads=5, stall_timeout=1.0)


def _wait_for(cond, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_camera_missing_then_plugged_in(clips_dir):
    frames = bgr_frames(clips_dir / CLIP, 5)
    state: dict = {}
    factory = FakeVideoCapture.factory(frames, available=lambda n: n >= 3, state=state)
    cam = CameraSource(0, retry=FAST_RETRY, capture_factory=factory)
    states = []
    cam.add_status_listener(lambda s: states.append((s.state, s.message)))
    with cam:
        assert _wait_for(lambda: cam.status.state == "reconnecting")
        assert "not available" in cam.status.message and "retrying" in cam.status.message
        assert cam.read(timeout=5.0) is not None  # the fourth open succeeds
    assert state["opens"] >= 4
    assert [s for s, _ in states][:2] == ["starting", "reconnecting"] and "running" in [s for s, _ in states]


def test_camera_unplugged_mid_stream_recovers_and_skips_corrupt_frames(clips_dir):
    frames = bgr_frames(clips_dir / CLIP, 5)
    # first open: 10 good frames, 2 corrupt, 3 good, then unplugged; second open fails (still gone); third works
    scripts = lambda n: (["ok"] * 10 + ["corrupt", "corrupt"] + ["ok"] * 3 + ["unplug"]) if n == 0 else ()
    factory = FakeVideoCapture.factory(frames, available=lambda n: n != 1, scripts=scripts)
    cam = CameraSource(0, retry=FAST_RETRY, capture_factory=factory)
    seen = []
    cam.add_status_listener(lambda s: seen.append(s.state))
    with cam:
        got = []
        assert _wait_for(lambda: "reconnecting" in seen, timeout=5.0)
        assert _wait_for(lambda: cam.reconnects >= 1 and cam.status.state == "running", timeout=5.0)
        while len(got) < 3:
            f = cam.read(timeout=2.0)
            assert f is not None
            got.append(f)
    assert all(f.image.shape == (288, 360, 3) for f in got)
    assert cam.status.state == "stopped" and not cam.running


def test_camera_stop_is_prompt_while_retrying():
    cam = CameraSource(0, retry=RetryPolicy(initial=5.0), capture_factory=FakeVideoCapture.factory([], available=lambda n: False))
    cam.start()
    assert _wait_for(lambda: cam.status.state == "reconnecting")
    t = time.monotonic()
    cam.stop()
    assert time.monotonic() - t < 1.0 and not cam.running


def test_list_cameras_does_not_fail():
    cams = list_cameras()
    assert isinstance(cams, list)


def test_frame_folders_avatars_and_evaluation_accept_the_same_images(clips_dir, tmp_path):
    """One list of image suffixes: a TIFF frame is read wherever a PNG is (frame folder, avatar folder,
    training clip), a text file nowhere."""
    from reenact_app.gui.avatars import _images_in
    from reenact_common.video_io import frame_files

    frames = bgr_frames(clips_dir / CLIP, 2)
    cv2.imwrite(str(tmp_path / "000.png"), frames[0])
    cv2.imwrite(str(tmp_path / "001.tiff"), frames[1])
    (tmp_path / "002.txt").write_text("not an image")
    with ImageFolderSource(tmp_path, realtime=False) as src:
        got = []
        while (f := src.read(timeout=5.0)) is not None:
            got.append(f.image)
    assert len(got) == 2 and np.array_equal(got[1], cv2.cvtColor(frames[1], cv2.COLOR_BGR2RGB))  # lossless TIFF
    assert [p.name for p in frame_files(tmp_path)] == ["000.png", "001.tiff"]
    assert [p.name for p in _images_in(tmp_path)] == ["000.png", "001.tiff"]
