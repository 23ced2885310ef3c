"""The offline driving loop's two ways of using the cores (reenact_app/drive.py): pipelined (keypoints
in the decode/crop thread, animate in the caller's) gives exactly the serial frames, in order; closing
it early or an error in its first stage leaves no thread behind, and the error reaches the caller."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from reenact_app.drive import DriveConfig, StageTimes, avatar_landmarks, drive, make_croppers
from reenact_app.engines.select import EngineOptions, create_engine
from reenact_app.expression import ExpressionSettings
from reenact_app.session import AnimationSession
from reenact_common.errors import MediaError
from reenact_common.video_io import iter_frames

DRIVING = "KwaiVGI+LivePortrait/assets/examples/driving/d0.mp4"  # the mouth opens (frame 44), a blink (65)
FIRST, LAST = 36, 70
PIPELINED = DriveConfig.measured(pipelined=True)  # as `reenact animate --pipelined` runs it
SERIAL = DriveConfig()


@pytest.fixture(scope="module")
def frames(clips_dir: Path) -> list[np.ndarray]:
    out = list(iter_frames(clips_dir / DRIVING, LAST))[FIRST:]
    assert len(out) == LAST - FIRST
    return out


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """The bundled model in ONNX Runtime, built as `reenact animate` builds it for each loop."""
    cache = tmp_path_factory.mktemp("onnx-cache")
    built = {config.pipelined: create_engine(None, "onnxruntime-cpu", options=EngineOptions(
        cache_dir=cache, keypoint_threads=config.keypoint_threads)) for config in (SERIAL, PIPELINED)}
    yield built
    for engine in built.values():
        engine.close()


@pytest.fixture(scope="module")
def avatar():
    from reenact_app.images import load_avatar_image
    from reenact_app.tracking import prepare_avatar
    from reenact_common.paths import assets_dir

    crop = prepare_avatar(load_avatar_image(assets_dir() / "avatars" / "monalisa.jpg"), 256).crop
    return crop, avatar_landmarks(crop)


def new_session(engine, avatar) -> AnimationSession:
    session = AnimationSession(engine, expression=ExpressionSettings(strength=1.0))
    session.set_avatar(*avatar)
    return session


def run_drive(engine, avatar, frames, config: DriveConfig) -> list:
    croppers = make_croppers(True, 256, landmarks=True)
    driven = drive(new_session(engine, avatar), croppers, frames, 25.0, StageTimes(), config)
    try:
        return list(driven)
    finally:
        driven.close()
        croppers.close()


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "decode-crop"]


@pytest.fixture(scope="module")
def plain(engines, avatar, frames) -> list[np.ndarray]:
    """One thread, no overlap: crop, then `AnimationSession.animate`, frame after frame."""
    croppers = make_croppers(True, 256, landmarks=True)
    session = new_session(engines[False], avatar)
    try:
        return [session.animate(d.crop, d.landmarks) for d in
                (croppers.frame(frame, i / 25.0) for i, frame in enumerate(frames))]
    finally:
        croppers.close()


@pytest.mark.parametrize("config", [SERIAL, PIPELINED], ids=["serial", "pipelined"])
def test_loop_gives_the_one_thread_frames_in_order(engines, avatar, frames, plain, config):
    driven = run_drive(engines[config.pipelined], avatar, frames, config)
    assert [d.index for d in driven] == list(range(len(frames)))
    for d, expected in zip(driven, plain):
        np.testing.assert_array_equal(d.output, expected, err_msg=f"frame {d.index}")
    # the expression warps really ran, from each frame's own state: the open mouth and the blink
    # change the picture, and not every frame alike
    warped = [not np.array_equal(d.prepared.finish(avatar[0]), avatar[0]) for d in driven]
    assert any(warped) and not all(warped)


def test_unfinished_crops_are_the_models_frames_and_finish_gives_the_rest(engines, avatar, frames, plain):
    """`finish_crop=False` (`animate --full-frame`, which finishes the composed picture instead) yields
    the model's own frames; finishing them with each frame's state gives the finished loop's frames."""
    import dataclasses

    driven = run_drive(engines[False], avatar, frames, dataclasses.replace(SERIAL, finish_crop=False))
    finished = [d.prepared.finish(d.output) for d in driven]
    for image, expected in zip(finished, plain):
        np.testing.assert_array_equal(image, expected)
    assert sum(not np.array_equal(d.output, f) for d, f in zip(driven, finished)) > 0


def test_pipelined_close_early_stops_the_worker(engines, avatar, frames):
    croppers = make_croppers(True, 256, landmarks=True)
    driven = drive(new_session(engines[True], avatar), croppers, frames, 25.0, StageTimes(), PIPELINED)
    try:
        assert next(driven).index == 0 and next(driven).index == 1
    finally:
        driven.close()  # the worker may be blocked on the full queue: it must still end
        croppers.close()
    assert worker_threads() == []


def test_pipelined_first_stage_error_reaches_the_caller(engines, avatar, frames):
    def broken_video():
        yield from frames[:4]
        raise MediaError("driving.mp4: frame 5 can't be decoded (the file is truncated); re-encode it")

    with pytest.raises(MediaError, match="frame 5 can't be decoded") as caught:
        run_drive(engines[True], avatar, broken_video(), PIPELINED)
    assert "\n" not in str(caught.value)
    assert worker_threads() == []


def test_pipelined_keypoint_error_reaches_the_caller(engines, avatar, frames):
    """An engine failing in the first stage (keypoints) stops the loop with that error, nothing hangs."""
    session = new_session(engines[True], avatar)
    calls = {"n": 0}
    detect = session.engine.detect_keypoints

    def failing_detect(image):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("keypoint graph failed")
        return detect(image)

    session.engine = type("FailingKeypoints", (), {  # the same engine, its keypoints failing on frame 3
        "detect_keypoints": staticmethod(failing_detect), "animate": session.engine.animate,
        "image_size": 256})()
    croppers = make_croppers(True, 256, landmarks=True)
    driven = drive(session, croppers, frames, 25.0, StageTimes(), PIPELINED)
    got = []
    try:
        with pytest.raises(RuntimeError, match="keypoint graph failed"):
            for d in driven:
                got.append(d.index)
    finally:
        driven.close()
        croppers.close()
    assert got == [0, 1]
    assert worker_threads() == []


def test_drive_config_checks_its_depth():
    with pytest.raises(ValueError, match="depth must be 1..64"):
        DriveConfig(pipelined=True, depth=0)
