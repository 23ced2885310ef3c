"""The three-call split and the relative-motion session reproduce the plain model and FOMM's normalize_kp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models import build_model, movement_scale, normalize_kp
from reenact_app.engines.base import Keypoints
from reenact_app.engines.torch_engine import TorchEngine, to_tensor
from reenact_app.session import AnimationSession, MotionSettings, relative_keypoints
from reenact_common.video_io import centre_crop, read_frames

CLIP = "wyhsirius+LIA/data/vox/driving2.mp4"


@pytest.fixture(scope="module")
def frames(clips_dir: Path) -> list[np.ndarray]:
    return [centre_crop(f, 256) for f in read_frames(clips_dir / CLIP, 30)[::6]]


@pytest.fixture(scope="module", params=["paper-rt", "fomm-rt"])
def model(request):
    torch.manual_seed(0)
    return build_model(request.param).eval()


def _kp(kp: dict) -> Keypoints:
    return Keypoints(kp["value"][0].numpy(), kp["jacobian"][0].numpy())


def test_split_matches_plain_model(model, frames):
    """encode_source + animate == generator.forward (<= 1e-5), on real frames."""
    source = to_tensor(frames[0], torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        kp_source = model.kp_detector(source)
        state = model.generator.encode_source(source, kp_source)
        for frame in frames[1:4]:
            driving = to_tensor(frame, torch.device("cpu"), torch.float32)
            kp_driving = model.kp_detector(driving)
            plain = model.generator(source, kp_driving, kp_source)["prediction"]
            split = model.generator.animate(state, kp_driving)["prediction"]
            assert (plain - split).abs().max().item() <= 1e-5


def test_torch_engine_matches_plain_model(model, frames):
    engine = TorchEngine(model)
    state = engine.encode_source(frames[0])
    kp = engine.detect_keypoints(frames[1])
    out = engine.animate(state, kp)
    source = to_tensor(frames[0], torch.device("cpu"), torch.float32)
    driving = to_tensor(frames[1], torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        reference = model.generator(source, model.kp_detector(driving), model.kp_detector(source))["prediction"]
    expected = reference[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - expected).max() <= 1


def test_relative_keypoints_match_normalize_kp(model, frames):
    with torch.inference_mode():
        kps = [model.kp_detector(to_tensor(f, torch.device("cpu"), torch.float32)) for f in frames[:3]]
    source, initial, driving = kps
    scale = movement_scale(source, initial)
    expected = normalize_kp(source, driving, initial, adapt_movement_scale=True, use_relative_movement=True,
                            use_relative_jacobian=True)
    got = relative_keypoints(_kp(source), _kp(driving), _kp(initial), scale)
    np.testing.assert_allclose(got.value, expected["value"][0].numpy(), atol=1e-5)
    np.testing.assert_allclose(got.jacobian, expected["jacobian"][0].numpy(), atol=1e-4)


def test_session_scale_computed_once_at_calibration(model, frames, monkeypatch):
    import reenact_app.session as session_module

    calls = []
    real = session_module.convex_hull_area
    monkeypatch.setattr(session_module, "convex_hull_area", lambda p: calls.append(1) or real(p))
    session = AnimationSession(TorchEngine(model), MotionSettings(relative=True, adapt_scale=True))
    session.set_avatar(frames[0])
    for frame in frames[1:]:
        assert session.animate(frame).shape == (256, 256, 3)
    assert len(calls) == 2  # avatar hull + reference hull, once; none per frame
    assert session.reference is not None and session.scale > 0


def test_session_relative_first_frame_reproduces_avatar_pose(model, frames):
    """Relative motion: the calibration frame itself maps to the avatar's own keypoints."""
    engine = TorchEngine(model)
    session = AnimationSession(engine)
    session.set_avatar(frames[0])
    kp = session.driving_keypoints(frames[1])  # calibrates on this frame
    np.testing.assert_allclose(kp.value, session.source.keypoints.value, atol=1e-6)
    np.testing.assert_allclose(kp.jacobian, session.source.keypoints.jacobian, atol=1e-5)


def test_session_absolute_and_recalibrate(model, frames):
    engine = TorchEngine(model)
    session = AnimationSession(engine, MotionSettings(relative=False))
    session.set_avatar(frames[0])
    kp = session.driving_keypoints(frames[2])
    np.testing.assert_allclose(kp.value, engine.detect_keypoints(frames[2]).value)
    session.settings.relative = True
    session.calibrate(frames[3])
    first = session.reference.value.copy()
    session.calibrate()  # next frame becomes the reference
    session.animate(frames[4])
    assert not np.allclose(first, session.reference.value)


def test_animate_before_avatar_is_an_error(model, frames):
    with pytest.raises(RuntimeError, match="set_avatar"):
        AnimationSession(TorchEngine(model)).animate(frames[0])


def test_session_smooths_live_keypoints_and_restarts_on_calibration(model, frames):
    """With timestamps the keypoints are One Euro smoothed (they lag a real head move); without, raw;
    a calibration starts the filter afresh (no pull towards the old driver's keypoints)."""
    from reenact_app.filters import OneEuroConfig

    smoothing = OneEuroConfig(min_cutoff=0.5, beta=0.0)  # strong, speed-independent: a clear lag
    live, raw = AnimationSession(TorchEngine(model), smoothing=smoothing), AnimationSession(TorchEngine(model))
    for session in (live, raw):
        session.set_avatar(frames[0])
    steps = []
    for i, frame in enumerate(frames[1:4]):
        smoothed, plain = live.driving_keypoints(frame, timestamp=i / 25.0), raw.driving_keypoints(frame)
        steps.append(float(np.abs(smoothed.value - plain.value).max()))
        assert smoothed.value.dtype == np.float32 and smoothed.jacobian.shape == plain.jacobian.shape
    assert steps[0] < 1e-6 and min(steps[1:]) > 1e-3  # the first sample passes, later ones lag
    np.testing.assert_allclose(live.driving_keypoints(frames[2]).value, raw.driving_keypoints(frames[2]).value,
                               atol=1e-6)  # no timestamp: not smoothed
    for session in (live, raw):
        session.calibrate()
    after = live.driving_keypoints(frames[4], timestamp=4 / 25.0)
    np.testing.assert_allclose(after.value, raw.driving_keypoints(frames[4]).value, atol=1e-6)
    live.set_smoothing(OneEuroConfig(enabled=False))
    np.testing.assert_allclose(live.driving_keypoints(frames[3], timestamp=5 / 25.0).value,
                               raw.driving_keypoints(frames[3]).value, atol=1e-6)
