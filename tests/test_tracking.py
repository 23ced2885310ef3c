"""Face tracking, crop stability, no-face handling and paste-back geometry on real shared frames."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from reenact_app.filters import OneEuroConfig, OneEuroFilter, jitter, lag_frames
from reenact_app.tracking import (
    CropBox,
    FaceTracker,
    TrackerConfig,
    crop_image,
    detect_faces,
    prepare_avatar,
)

IDENTITIES = [
    "rizkiarm+LipNet/evaluation/samples/GRID/bbaf2n.mpg",
    "KwaiVGI+LivePortrait/assets/examples/driving/d0.mp4",
    "wyhsirius+LIA/data/vox/driving1.mp4",
    "tencent-ailab+V-Express/test_samples/short_case/AOC/gt.mp4",
    "ajay-sainy+Wav2Lip-GFPGAN/inputs/kim_7s_raw.mp4",
    "ali-vilab+dreamtalk/data/style_clip/video/W009_front_neutral_level1_001.mp4",
]
STILL_CLIP = "rizkiarm+LipNet/evaluation/samples/GRID/bbaf2n.mpg"  # a speaker holding still
MOVING_CLIP = "tanshuai0219+EDTalk/test_data/pose_source1.mp4"  # head turns and moves


def read_frames(path, n: int, start: int = 0) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        for i in range(start + n):
            ok, bgr = cap.read()
            if not ok:
                break
            if i >= start:
                frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    assert frames, f"no frames from {path}"
    return frames


@pytest.mark.parametrize("clip", IDENTITIES, ids=lambda c: c.split("/")[-1])
def test_detect_and_crop_identity(clips_dir, clip):
    frame = read_frames(clips_dir / clip, 1, start=5)[0]
    with FaceTracker(TrackerConfig(crop_size=256)) as tracker:
        res = tracker.track(frame, 0.0)
    assert res.face_found and res.crop is not None
    assert res.crop.shape == (256, 256, 3) and res.crop.dtype == np.uint8
    assert res.landmarks is not None and res.landmarks.shape == (468, 2)
    # the landmarks lie inside the crop box, so the mesh agrees with the detector
    x0, y0, x1, y1 = res.box.xyxy()
    inside = (res.landmarks[:, 0] > x0) & (res.landmarks[:, 0] < x1) & (res.landmarks[:, 1] > y0) & (res.landmarks[:, 1] < y1)
    assert inside.mean() > 0.95
    # the crop frames one face, centred, at the configured margin (VoxCeleb-like framing)
    faces = detect_faces(res.crop)
    assert len(faces) == 1
    f = faces[0]
    assert abs(f.x + f.w / 2 - 128) < 0.1 * 256
    assert abs(f.y + f.h / 2 - 128) < 0.15 * 256
    assert 0.35 < max(f.w, f.h) / 256 < 0.7


def _two_face_frame(a: np.ndarray, b: np.ndarray, scale_a: float, scale_b: float) -> np.ndarray:
    canvas = np.full((480, 960, 3), 90, np.uint8)
    for img, scale, x in ((a, scale_a, 0), (b, scale_b, 480)):
        side = int(440 * scale)
        canvas[20 : 20 + side, x + 20 : x + 20 + side] = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
    return canvas


def test_largest_face_then_stays_on_it(clips_dir):
    a = read_frames(clips_dir / IDENTITIES[1], 1)[0]
    b = read_frames(clips_dir / IDENTITIES[3], 1)[0]
    with FaceTracker(TrackerConfig(use_mesh=False)) as tracker:
        first = tracker.track(_two_face_frame(a, b, 1.0, 0.7), 0.0)
        assert first.num_faces == 2 and first.box.cx < 480  # the larger face (left)
        # the right face becomes the larger one: the tracker stays on the left face
        for i in range(1, 5):
            res = tracker.track(_two_face_frame(a, b, 0.8, 1.0), i / 25)
            assert res.face_found and res.box.cx < 480
        tracker.redetect()  # on demand: pick the largest again
        res = tracker.track(_two_face_frame(a, b, 0.8, 1.0), 1.0)
        assert res.box.cx > 480


def _raw_and_smoothed(frames, fps, config):
    raw, smooth = [], []
    with FaceTracker(config) as tracker:
        for i, frame in enumerate(frames):
            res = tracker.track(frame, i / fps)
            assert res.face_found
            raw.append((res.raw_box.cx, res.raw_box.cy, res.raw_box.size))
            smooth.append((res.box.cx, res.box.cy, res.box.size))
    return np.array(raw), np.array(smooth)


def test_crop_stability_jitter_before_after_smoothing(clips_dir):
    frames = read_frames(clips_dir / STILL_CLIP, 75)
    raw, smooth = _raw_and_smoothed(frames, 25.0, TrackerConfig(use_mesh=False))
    size = raw[:, 2].mean()
    centre_raw, centre_s = jitter(raw[:, :2], size), jitter(smooth[:, :2], size)
    size_raw, size_s = jitter(raw[:, 2:], size), jitter(smooth[:, 2:], size)
    print(f"jitter (% of crop size) centre {100 * centre_raw:.3f} -> {100 * centre_s:.3f}, size {100 * size_raw:.3f} -> {100 * size_s:.3f}")
    assert centre_s < 0.35 * centre_raw
    assert size_s < 0.2 * size_raw
    assert size_s < 0.003  # under 0.3 % of the crop per frame^2: no visible zoom pumping


def test_smoothing_lag_on_moving_clip(clips_dir):
    frames = read_frames(clips_dir / MOVING_CLIP, 100)
    raw, smooth = _raw_and_smoothed(frames, 25.0, TrackerConfig(use_mesh=False))
    lag = lag_frames(raw[:, :2], smooth[:, :2])
    print(f"crop centre lag {lag:.2f} frames")
    assert lag < 4.0
    assert np.abs(smooth[:, :2] - raw[:, :2]).max() / raw[:, 2].mean() < 0.05  # never trails by > 5 % of the crop


def test_blank_and_covered_frames_have_no_face(clips_dir):
    frames = read_frames(clips_dir / STILL_CLIP, 3)
    with FaceTracker() as tracker:
        res = tracker.track(frames[0], 0.0)
        assert res.face_found
        box = res.box
        blank = np.zeros_like(frames[1])
        covered = frames[1].copy()
        x0, y0, x1, y1 = (int(v) for v in res.raw_box.xyxy())
        cv2.rectangle(covered, (max(0, x0), max(0, y0)), (x1, y1), (200, 180, 160), -1)  # a hand-coloured cover
        for t, img in ((0.04, blank), (0.08, covered)):
            r = tracker.track(img, t)
            assert not r.face_found and r.landmarks is None and r.raw_box is None
            assert r.box == box and r.crop is not None  # the last box is kept for display
        assert tracker.track(frames[2], 0.12).face_found  # and it comes back


def test_freeze_keeps_box(clips_dir):
    frames = read_frames(clips_dir / MOVING_CLIP, 30)
    with FaceTracker(TrackerConfig(use_mesh=False)) as tracker:
        tracker.track(frames[0], 0.0)
        tracker.freeze(True)
        box = tracker.track(frames[1], 0.04).box
        for i, f in enumerate(frames[2:], 2):
            res = tracker.track(f, i / 25)
            assert res.box == box and res.frozen
        tracker.freeze(False)
        assert tracker.track(frames[-1], 2.0).box != box


def test_avatar_crop_and_paste_back_identity(shared_dir):
    img = cv2.cvtColor(cv2.imread(str(shared_dir / "data/stills/alievk+avatarify-python/avatars/mona.jpg")), cv2.COLOR_BGR2RGB)
    av = prepare_avatar(img, 256)
    assert av.face_found and av.message == "" and av.crop.shape == (256, 256, 3)
    # pasting the unchanged crop back reproduces the picture (up to resampling)
    back = av.paste_back(av.crop)
    assert back.shape == img.shape
    diff = np.abs(back.astype(int) - img.astype(int))
    assert diff.mean() < 2.0
    # a solid crop lands exactly on the box: centre replaced, outside the box untouched
    red = np.zeros_like(av.crop)
    red[..., 0] = 255
    out = av.paste_back(red)
    cx, cy = int(av.box.cx), int(av.box.cy)
    assert tuple(out[cy, cx]) == (255, 0, 0)
    x0, y0, x1, y1 = av.box.xyxy()
    mask = np.ones(img.shape[:2], bool)
    mask[max(0, int(y0) - 1) : int(math.ceil(y1)) + 1, max(0, int(x0) - 1) : int(math.ceil(x1)) + 1] = False
    assert np.array_equal(out[mask], img[mask])


def test_roll_alignment_and_rotated_paste_back(clips_dir):
    frame = read_frames(clips_dir / IDENTITIES[1], 1)[0]
    h, w = frame.shape[:2]
    rot = cv2.warpAffine(frame, cv2.getRotationMatrix2D((w / 2, h / 2), 20, 1.0), (w, h), borderMode=cv2.BORDER_REFLECT)
    av = prepare_avatar(rot, 256, TrackerConfig(align_roll=True))
    assert av.face_found
    assert abs(abs(av.box.angle) - 20) < 6  # eye line found about 20 degrees off level
    level = prepare_avatar(frame, 256, TrackerConfig(align_roll=True))
    assert abs(level.box.angle) < 6
    back = av.paste_back(av.crop)
    assert np.abs(back.astype(int) - rot.astype(int)).mean() < 2.0


def test_avatar_without_face_gets_centre_crop(clips_dir):
    frame = read_frames(clips_dir / IDENTITIES[4], 1)[0]  # 1920x1080: the face is in the middle
    background = np.ascontiguousarray(frame[:, :400])  # left strip: studio, no face
    av = prepare_avatar(background, 256)
    assert not av.face_found and "centre crop" in av.message
    assert av.box == CropBox(200.0, 540.0, 400.0, 0.0) and av.crop.shape == (256, 256, 3)


def test_crop_image_antialiased_downscale():
    img = np.zeros((2000, 2000, 3), np.uint8)
    img[::2] = 255  # 1-pixel stripes: a plain bilinear warp would alias to stripes
    crop = crop_image(img, CropBox(1000, 1000, 1600), 128)
    assert crop.shape == (128, 128, 3) and abs(float(crop.mean()) - 127.5) < 10 and crop.std() < 20


def test_one_euro_filter_smooths_noise_and_follows_steps():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(min_cutoff=1.0, beta=1.0)
    noisy = 1.0 + 0.01 * rng.standard_normal(200)
    out = np.array([f(x, i / 30) for i, x in enumerate(noisy)])
    assert jitter(out[20:]) < 0.2 * jitter(noisy[20:])
    f.reset()
    step = np.r_[np.zeros(30), np.ones(60)]
    out = np.array([f(x, i / 30) for i, x in enumerate(step)])
    assert out[-1] > 0.98  # converges after a jump
    assert OneEuroFilter.from_config(OneEuroConfig(enabled=False))(3.0, 0.0) == 3.0


def test_avatar_formats_grey_rgba_16bit(shared_dir):
    from reenact_app.tracking import to_rgb8

    img = cv2.cvtColor(cv2.imread(str(shared_dir / "data/stills/alievk+avatarify-python/avatars/einstein.jpg")), cv2.COLOR_BGR2RGB)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
    deep = img.astype(np.uint16) * 257
    for variant in (grey, rgba, deep):
        av = prepare_avatar(variant, 256)
        assert av.face_found and av.crop.shape == (256, 256, 3) and av.crop.dtype == np.uint8
    clear = np.zeros((4, 4, 4), np.uint8)  # fully transparent -> white, not black
    assert to_rgb8(clear).min() == 255
    with pytest.raises(ValueError):
        to_rgb8(np.zeros((4, 4, 5), np.uint8))


CLOSE_UP_CLIP = "Dorniwang+PD-FGC-inference/test/mp4s/test4_panel3.mp4"  # 224 px, the face fills the frame


def _far_face_frames(shared_dir, n: int) -> list[np.ndarray]:
    """A portrait shrunk to a 120 px square (face ~75 px) on a plain 1280x720 frame, drifting sideways:
    someone sitting a few metres from the camera."""
    img = cv2.cvtColor(cv2.imread(str(shared_dir / "data/stills/alievk+avatarify-python/avatars/obama.jpg")), cv2.COLOR_BGR2RGB)
    small = cv2.resize(img, (120, 120), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(n):
        frame = np.full((720, 1280, 3), 90, np.uint8)
        x = 900 + 4 * i
        frame[400:520, x : x + 120] = small
        frames.append(frame)
    return frames


def test_close_up_that_fills_the_frame_is_tracked(clips_dir):
    frames = read_frames(clips_dir / CLOSE_UP_CLIP, 48)
    with FaceTracker(TrackerConfig(use_mesh=False, other_range_fallback=False)) as full_range_only:
        missed = sum(not full_range_only.track(f, i / 25).face_found for i, f in enumerate(frames))
    assert missed > 40  # the clip is one the full-range model alone can't see
    with FaceTracker(TrackerConfig(use_mesh=False)) as tracker:
        found = [tracker.track(f, i / 25) for i, f in enumerate(frames)]
        assert tracker.detection_model == 0  # it went to the short-range model and stayed there
    assert sum(r.face_found for r in found) >= 46
    # the crop is about the face (centre of the frame, roughly its size), not a stray detection
    last = found[-1].box
    assert abs(last.cx - 112) < 40 and abs(last.cy - 112) < 50 and 150 < last.size < 500


def test_far_face_is_tracked_and_near_then_far_switches_back(shared_dir, clips_dir):
    far = _far_face_frames(shared_dir, 10)
    with FaceTracker(TrackerConfig(use_mesh=False)) as tracker:
        results = [tracker.track(f, i / 25) for i, f in enumerate(far)]
        assert all(r.face_found for r in results) and tracker.detection_model == 1
        assert abs(results[-1].raw_box.cx - (900 + 4 * 9 + 60)) < 30 and abs(results[-1].raw_box.cy - 460) < 40
        # a close-up then the far face again (someone leaning in, then back): both models in turn
        tracker.redetect()
        close = read_frames(clips_dir / CLOSE_UP_CLIP, 5)
        assert all(tracker.track(f, 1 + i / 25).face_found for i, f in enumerate(close))
        assert tracker.detection_model == 0
        tracker.redetect()
        assert all(tracker.track(f, 2 + i / 25).face_found for i, f in enumerate(far))
        assert tracker.detection_model == 1
