"""Full-resolution output: every engine returns the motion behind its crop, and the compositor warps the
avatar's own pixels with it (reenact_app/full_resolution.py). Real bundled weights, real ONNX Runtime,
real portraits from the shared stills."""

from __future__ import annotations


import cv2
import numpy as np
import pytest
import torch

from export.onnx_export import AnimatePart, KeypointPart
from models import load_checkpoint
from reenact_app.compositor import paste_back
from reenact_app.engines.base import Animation, Motion
from reenact_app.engines.select import EngineOptions, FallbackEngine, create_engine
from reenact_app.engines.torch_engine import TorchEngine
from reenact_app.full_resolution import FullResolutionCompositor, FullResolutionConfig
from reenact_app.tracking import CropBox, prepare_avatar
from reenact_common.paths import default_weights
from tests.conftest import bgr_frames

PORTRAIT = "data/stills/alievk+avatarify-python/avatars/mona.jpg"  # 512 x 512


@pytest.fixture(scope="module")
def model():
    return load_checkpoint(default_weights()).eval()


@pytest.fixture(scope="module")
def torch_engine(model):
    return TorchEngine(model)


@pytest.fixture(scope="module")
def large_avatar(shared_dir):
    """The portrait upscaled 2x (1024 px): its face box is far larger than the model's 256 px."""
    image = cv2.cvtColor(cv2.imread(str(shared_dir / PORTRAIT)), cv2.COLOR_BGR2RGB)
    image = cv2.resize(image, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)
    avatar = prepare_avatar(image, 256)
    assert avatar.face_found and avatar.box.size > 512
    return avatar


def _laplacian_variance(image: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def test_avatar_held_still_comes_back_exactly_at_its_own_resolution(torch_engine, large_avatar):
    source = torch_engine.encode_source(large_avatar.crop)
    still = torch_engine.animate_with_motion(source, source.keypoints)  # driver = reference
    assert still.motion is not None
    assert np.abs(still.motion.displacement).max() < 1e-5  # no motion
    assert (still.motion.visibility == 1.0).all()  # the model sees the avatar everywhere
    compositor = FullResolutionCompositor(large_avatar.image, large_avatar.box, 256)
    assert compositor.image.shape == large_avatar.image.shape  # the box is under the 1024 px cap
    out = compositor.compose(still)
    assert out.shape == large_avatar.image.shape
    np.testing.assert_array_equal(out, large_avatar.image)  # exact, pixel for pixel
    # Today's upscaled paste-back of the same crop is visibly softer over the face.
    x0, y0, x1, y1 = (int(v) for v in large_avatar.box.xyxy())
    face = (slice(max(0, y0), y1), slice(max(0, x0), x1))
    upscaled = large_avatar.paste_back(still.image)
    assert _laplacian_variance(upscaled[face]) < 0.5 * _laplacian_variance(large_avatar.image[face])


def test_displacement_moves_the_portrait_by_the_matching_number_of_pixels():
    """A uniform displacement of d crop units samples the portrait d * (S-1)/2 * box/S pixels away."""
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (900, 800, 3), dtype=np.uint8), (0, 0), 2)
    box = CropBox(400.0, 450.0, 512.0)
    compositor = FullResolutionCompositor(image, box, 256, FullResolutionConfig(feather=0.0))
    shift_px = 6  # portrait pixels to the right
    displacement = np.zeros((64, 64, 2), np.float32)
    displacement[..., 0] = shift_px * 256 / 512 * 2 / 255
    warped = compositor.warp_avatar(displacement)
    x0, y0, x1, y1 = compositor.rect
    expected = image[y0:y1, x0 + shift_px:x1 + shift_px]
    inner = np.abs(warped[:, : expected.shape[1]].astype(int) - expected.astype(int))[20:-20, 20:-20]
    assert inner.max() <= 1  # bilinear at a 1/32-pixel fixed point


def test_displacement_follows_a_rotated_crop():
    """With the crop rotated (align_roll), a displacement along the crop's x axis moves the portrait along
    that axis: the expected offset comes from the box's corners, independently of its matrix."""
    rng = np.random.default_rng(1)
    image = cv2.GaussianBlur(rng.integers(0, 256, (700, 700, 3), dtype=np.uint8), (0, 0), 3)
    box = CropBox(350.0, 350.0, 400.0, angle=30.0)
    compositor = FullResolutionCompositor(image, box, 256, FullResolutionConfig(feather=0.0))
    step = 0.03  # crop units
    displacement = np.zeros((64, 64, 2), np.float32)
    displacement[..., 0] = step
    top_left, top_right = box.corners()[:2]
    offset = (top_right - top_left) / 256 * step * 255 / 2  # one crop pixel along x, in portrait pixels
    x0, y0, x1, y1 = compositor.rect
    xs, ys = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    expected = cv2.remap(image, xs + np.float32(offset[0]), ys + np.float32(offset[1]), cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    got = compositor.warp_avatar(displacement)
    assert np.hypot(*offset) > 3  # a real move
    assert np.abs(got.astype(int) - expected.astype(int))[40:-40, 40:-40].max() <= 1


def test_no_seam_at_the_paste_back_border():
    """A synthetic smooth avatar and a model output 40 levels brighter everywhere the decoder stands:
    the feathered paste-back crosses the border without a jump; a hard paste would jump by 40."""
    ys, xs = np.mgrid[0:700, 0:700].astype(np.float32)
    image = np.dstack([100 + 60 * np.sin(xs / 90.0), 120 + 50 * np.cos(ys / 70.0), 110 + 0.05 * xs]).astype(np.uint8)
    box = CropBox(350.0, 340.0, 420.0)
    compositor = FullResolutionCompositor(image, box, 256)
    crop = cv2.warpAffine(image, box.matrix(256), (256, 256), flags=cv2.INTER_LINEAR)
    brighter = np.clip(crop.astype(int) + 40, 0, 255).astype(np.uint8)
    # The left of the crop is the avatar itself, the right the (brighter) decoder, a smooth ramp between
    # (as the model's maps are): the only hard edge left would be the paste-back border.
    visibility = np.tile(np.clip((160.0 - np.arange(256)) / 64.0, 0.0, 1.0).astype(np.float32), (256, 1))
    out = compositor.compose(Animation(brighter, Motion(np.zeros((64, 64, 2), np.float32), visibility)))

    def max_step(picture: np.ndarray) -> int:
        signal = picture.astype(int)
        return int(max(np.abs(np.diff(signal, axis=0)).max(), np.abs(np.diff(signal, axis=1)).max()))

    natural = max_step(image)
    assert max_step(out) <= natural + 3
    hard = paste_back(image, brighter, box.matrix(256), feather=0.0)
    assert max_step(hard) >= natural + 15  # a hard paste: the 40-level step over a pixel or two
    x0, y0, x1, y1 = compositor.rect
    assert np.abs(out[y0 + 5:y1 - 5, x0 + 5:(x0 + x1) // 2 - 60].astype(int)
                  - image[y0 + 5:y1 - 5, x0 + 5:(x0 + x1) // 2 - 60].astype(int)).max() <= 1  # visible half: the avatar


def test_crop_side_is_capped():
    image = np.full((3000, 2400, 3), 90, np.uint8)
    compositor = FullResolutionCompositor(image, CropBox(1200.0, 1500.0, 2000.0), 256, FullResolutionConfig(max_crop_side=1000))
    assert compositor.image.shape[:2] == (1500, 1200) and compositor.box.size == pytest.approx(1000.0)
    with pytest.raises(ValueError, match="max_crop_side"):
        FullResolutionConfig(max_crop_side=10)


def test_motion_none_is_the_plain_paste_back(large_avatar):
    compositor = FullResolutionCompositor(large_avatar.image, large_avatar.box, 256)
    crop = np.full((256, 256, 3), 200, np.uint8)
    ours = compositor.compose(Animation(crop)).astype(int)
    plain = large_avatar.paste_back(crop).astype(int)
    assert np.abs(ours - plain).max() <= 1


# -- engines: the motion is the model's, from every backend ---------------------------------------
def _driving_keypoints(engine, source, shared_dir):
    frame = cv2.cvtColor(cv2.imread(str(shared_dir / "data/stills/alievk+avatarify-python/avatars/einstein.jpg")),
                         cv2.COLOR_BGR2RGB)
    return engine.detect_keypoints(prepare_avatar(frame, 256).crop)


def test_onnxruntime_returns_the_same_motion_as_pytorch(model, torch_engine, large_avatar, shared_dir, tmp_path):
    ort_engine = create_engine(model, "onnxruntime-cpu", options=EngineOptions(cache_dir=tmp_path))
    results = []
    for engine in (torch_engine, ort_engine):
        source = engine.encode_source(large_avatar.crop)
        results.append(engine.animate_with_motion(source, _driving_keypoints(torch_engine, source, shared_dir)))
    ours, theirs = results
    assert theirs.motion is not None and theirs.motion.displacement.shape == (64, 64, 2)
    assert np.abs(ours.motion.displacement).max() > 1e-3  # a real motion, not the identity
    np.testing.assert_allclose(theirs.motion.displacement, ours.motion.displacement, atol=1e-4)
    np.testing.assert_allclose(theirs.motion.visibility, ours.motion.visibility, atol=1e-3)
    assert 0.0 < ours.motion.visibility.min() < 1.0  # the decoder stands somewhere
    assert np.abs(theirs.image.astype(int) - ours.image.astype(int)).max() <= 1


def test_tensorrt_engine_unpacks_the_motion(model, torch_engine, large_avatar, monkeypatch):
    """TensorRTEngine with the real AnimatePart standing in for the compiled module (no GPU here)."""
    from reenact_app.engines.tensorrt_engine import TensorRTEngine

    monkeypatch.setattr(torch, "device", lambda *a, **k: torch.empty(0).device)
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: self)
    fake = {"kp_detector": KeypointPart(model).eval(), "animate": AnimatePart(model).eval()}
    engine = TensorRTEngine(model, "unused", builder=lambda *a: fake)
    engine._dtype = torch.float32  # fp16 convolutions don't run on this CPU; the unpacking is what is tested
    source = engine.encode_source(large_avatar.crop)
    kp = torch_engine.detect_keypoints(np.ascontiguousarray(large_avatar.crop[:, ::-1]))
    got = engine.animate_with_motion(source, kp)
    expected = torch_engine.animate_with_motion(torch_engine.encode_source(large_avatar.crop), kp)
    np.testing.assert_allclose(got.motion.displacement, expected.motion.displacement, atol=1e-5)
    np.testing.assert_allclose(got.motion.visibility, expected.motion.visibility, atol=1e-5)
    assert np.array_equal(engine.animate(source, kp), got.image)
    # A module compiled before the motion outputs (prediction only): the crop, no motion.
    fake["animate"] = lambda *args: AnimatePart(model).eval()(*args)[0]
    assert engine.animate_with_motion(source, kp).motion is None


def test_fallback_engine_passes_the_motion_through_a_switch(torch_engine, large_avatar):
    class Broken(TorchEngine):
        def animate_with_motion(self, source, kp_driving):
            raise RuntimeError("CUDA out of memory (fake)")

    broken = Broken.__new__(Broken)
    broken.__dict__.update(torch_engine.__dict__)
    engine = FallbackEngine(broken, ("torch-cpu",), model=None, options=EngineOptions(),
                            builder=lambda *a: torch_engine)
    source = engine.encode_source(large_avatar.crop)
    result = engine.animate_with_motion(source, source.keypoints)
    assert engine.active is torch_engine and "switched" in engine.notice
    assert result.motion is not None and (result.motion.visibility == 1.0).all()


# -- the live pipeline: the preview, virtual camera and recorder get the full-resolution frames ---------
def _pipeline_outputs(engine, avatar, clips_dir, full_resolution: bool) -> list[np.ndarray]:
    from reenact_app.capture import VideoFileSource
    from reenact_app.pipeline import LivePipeline, PipelineConfig
    from reenact_app.sinks import CallbackSink

    sent = []
    source = VideoFileSource(clips_dir / "KwaiVGI+LivePortrait/assets/examples/driving/d0.mp4", realtime=False)
    config = PipelineConfig(max_frames=6, full_resolution=full_resolution)
    with LivePipeline(source, engine, avatar, config, sinks=[CallbackSink(lambda image, _: sent.append(image))]) as pipe:
        assert pipe.wait(frames=6, timeout=120)
    return sent[1:]  # the first frame is the calibration reference


def test_pipeline_sends_full_resolution_frames_to_its_sinks(torch_engine, large_avatar, clips_dir):
    full = _pipeline_outputs(torch_engine, large_avatar, clips_dir, True)
    plain = _pipeline_outputs(torch_engine, large_avatar, clips_dir, False)
    assert all(frame.shape == large_avatar.image.shape for frame in full + plain)
    x0, y0, x1, y1 = (int(v) for v in large_avatar.box.xyxy())
    face = (slice(max(0, y0), y1), slice(max(0, x0), x1))
    own = _laplacian_variance(large_avatar.image[face])
    for ours, theirs in zip(full, plain):
        assert _laplacian_variance(ours[face]) > 0.8 * own  # the target: at least 80 % of the avatar's own
        assert _laplacian_variance(ours[face]) > 1.5 * _laplacian_variance(theirs[face])


def test_cli_animate_full_frame_writes_the_avatar_picture_at_its_resolution(large_avatar, clips_dir, tmp_path,
                                                                             monkeypatch, capsys):
    from reenact_app.cli import main

    monkeypatch.setenv("REENACT_CACHE", str(tmp_path / "cache"))
    avatar = tmp_path / "large.png"
    cv2.imwrite(str(avatar), cv2.cvtColor(large_avatar.image[:, :1000], cv2.COLOR_RGB2BGR))  # 1000 x 1024
    out = tmp_path / "full.mp4"
    code = main(["animate", "--avatar", str(avatar), "--driving", str(clips_dir / "wyhsirius+LIA/data/vox/driving2.mp4"),
                 "-o", str(out), "--full-frame", "--max-frames", "4", "--engine", "torch-cpu", "--no-progress"])
    assert code == 0 and "1000x1024" in capsys.readouterr().out
    frames = bgr_frames(out, 100)
    assert len(frames) == 4 and frames[0].shape == (1024, 1000, 3)
    code = main(["animate", "--avatar", str(avatar), "--driving", str(clips_dir / "wyhsirius+LIA/data/vox/driving2.mp4"),
                 "-o", str(tmp_path / "capped.mp4"), "--full-frame", "--max-side", "640", "--max-frames", "2",
                 "--engine", "torch-cpu", "--no-progress"])
    assert code == 0 and "624x640" in capsys.readouterr().out  # long side capped, sides even
