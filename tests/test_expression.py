"""Expression retargeting: openness on real faces, the lid warp, and the session's use of both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reenact_app.expression import (
    EYES, JAW_NECK, AvatarFace, BrowShape, ExpressionRetargeter, ExpressionSettings, MouthShape, Openness,
    close_eye, fit_similarity, lift_brow, open_mouth, widen_eye,
)
from reenact_common.errors import ConfigError

DRIVING = "KwaiVGI+LivePortrait/assets/examples/driving/d0.mp4"
# frames of that clip: neutral, mouth wide open (smile), both eyes shut
NEUTRAL, OPEN_MOUTH, BLINK = 0, 44, 65


@pytest.fixture(scope="module")
def driver(clips_dir: Path):
    """Tracked 256 px crops of the three frames, with their face mesh."""
    from reenact_app.drive import make_croppers
    from reenact_common.video_io import iter_frames

    croppers = make_croppers(True, 256, landmarks=True)
    try:
        out = {}
        for i, frame in enumerate(iter_frames(clips_dir / DRIVING, BLINK + 1)):
            crop = croppers.frame(frame, i / 25.0)
            if i in (NEUTRAL, OPEN_MOUTH, BLINK):
                assert crop.landmarks is not None, f"no face mesh on frame {i}"
                out[i] = crop
        return out
    finally:
        croppers.close()


@pytest.fixture(scope="module")
def avatar():
    from reenact_app.drive import avatar_landmarks
    from reenact_app.images import load_avatar_image
    from reenact_app.tracking import prepare_avatar
    from reenact_common.paths import assets_dir

    crop = prepare_avatar(load_avatar_image(assets_dir() / "avatars" / "monalisa.jpg"), 256).crop
    return crop, avatar_landmarks(crop)


def test_openness_sees_open_mouth_and_shut_eyes(driver):
    neutral, open_mouth, blink = (Openness.of(driver[i].landmarks) for i in (NEUTRAL, OPEN_MOUTH, BLINK))
    assert open_mouth.mouth > neutral.mouth + 0.1
    assert max(blink.eyes) < 0.6 * min(neutral.eyes)


def test_similarity_fit_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 256, (6, 2))
    angle, scale, shift = 0.3, 1.2, np.array([5.0, -7.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = fit_similarity(src, src @ rot.T + shift)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-9)
    moved = src @ rot.T + shift
    moved[:2] += 40.0  # points that went elsewhere do not pull a fit that weighs them zero
    weighted = fit_similarity(src, moved, np.array([0, 0, 1, 1, 2, 1.0]))
    np.testing.assert_allclose(weighted, m, atol=1e-9)
    assert not np.allclose(fit_similarity(src, moved), m, atol=1e-3)


def _synthetic_eye(avatar_landmarks: np.ndarray):
    """A flat skin-coloured image with a black eye (between the two lid arcs) drawn where the avatar's
    image-left eye is."""
    import cv2

    face = AvatarFace.measure(avatar_landmarks, np.zeros((10, 2)), 256)
    eye = face.eyes[0]
    image = np.full((256, 256, 3), (200, 160, 120), np.uint8)
    u = np.linspace(-1.0, 1.0, 41)
    arc = 1.0 - u ** 2
    local = np.concatenate([np.stack([u, eye.upper * arc / eye.half_width], 1),
                            np.stack([u, eye.lower * arc / eye.half_width], 1)[::-1]]) * eye.half_width
    outline = eye.centre + local[:, :1] * eye.x_axis + local[:, 1:] * eye.y_axis
    cv2.fillPoly(image, [np.round(outline).astype(np.int32)], (0, 0, 0))
    return image, eye


def test_lid_warp_is_identity_when_open_and_covers_the_eye_when_shut(avatar):
    image, eye = _synthetic_eye(avatar[1])
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert np.array_equal(close_eye(image, eye, 0.0, identity), image)
    dark = (image.sum(-1) == 0).sum()
    shut = close_eye(image, eye, 1.0, identity)
    # the eye is covered by lid skin down to a thin lash line (at most a few pixels in any column)
    shut_dark = shut.sum(-1) < 60
    assert shut_dark.sum() < 0.4 * dark
    assert shut_dark.sum(0).max() <= max(3, 0.5 * (eye.upper - eye.lower))
    half = close_eye(image, eye, 0.5, identity)
    assert 0.2 * dark < (half.sum(-1) < 60).sum() < 0.8 * dark
    # nothing moves far from the eye
    far = np.ones(image.shape[:2], bool)
    c = eye.centre.astype(int)
    far[max(c[1] - 40, 0):c[1] + 40, max(c[0] - 40, 0):c[0] + 40] = False
    assert np.array_equal(shut[far], image[far])


def test_lid_warp_follows_the_head(avatar):
    """The same eye seen through a similarity (head moved and scaled) closes where it now is."""
    import cv2

    image, eye = _synthetic_eye(avatar[1])
    moved = np.array([[1.1, 0.0, 12.0], [0.0, 1.1, -6.0]])
    seen = cv2.warpAffine(image, moved, (256, 256), borderMode=cv2.BORDER_REPLICATE)
    dark = (seen.sum(-1) < 60).sum()
    shut = close_eye(seen, eye, 1.0, moved)
    assert (shut.sum(-1) < 60).sum() < 0.4 * dark


def test_brow_lift_moves_the_brow_by_the_lift_and_nothing_far_away():
    image = np.full((256, 256, 3), 200, np.uint8)
    image[100:104, 90:170] = 0  # a dark brow, 4 px thick, centre row 101.5
    brow = BrowShape(np.array([130.0, 101.5]), np.array([1.0, 0.0]), np.array([0.0, -1.0]), 40.0, 20.0, 20.0)
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert np.array_equal(lift_brow(image, brow, 0.0, identity), image)
    for lift in (6.0, -6.0):
        out = lift_brow(image, brow, lift, identity)
        column = out[:, 130, 0].astype(float)
        dark_rows = np.flatnonzero(column < 100)
        assert abs(dark_rows.mean() - (101.5 - lift)) < 1.0  # image y grows downwards: up is -y
    far = lift_brow(image, brow, 6.0, identity)
    assert np.array_equal(far[200:], image[200:]) and np.array_equal(far[:, :10], image[:, :10])
    eye = image.copy()
    eye[122:126, 110:150] = 0  # the eye, under its upper lid (20 px below the brow, where the lift ends)
    for lift in (6.0, -6.0):  # the brow moves, the eye under it stays
        np.testing.assert_array_equal(lift_brow(eye, brow, lift, identity)[122:130], eye[122:130])


def test_mouth_opening_draws_a_dark_inside_between_parted_lips(avatar):
    crop, landmarks = avatar
    face = AvatarFace.measure(landmarks, np.zeros((10, 2)), 256, crop)
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert np.array_equal(open_mouth(crop, face.mouth, 0.0, identity), crop)
    m = face.mouth
    opened = open_mouth(crop, m, 0.3 * face.iod_px, identity)
    below_centre = np.round(m.centre - 0.1 * face.iod_px * m.y_axis).astype(int)  # just under the lip line
    assert opened[below_centre[1], below_centre[0]].mean() < 0.6 * crop[below_centre[1], below_centre[0]].mean()
    # the eyes and everything below the neck under the chin are untouched
    drop = (1.0 - ExpressionSettings().upper_lip_share) * 0.3 * face.iod_px  # the jaw's drop
    neck = int(m.centre[1] - m.chin + drop + JAW_NECK * (m.lower - m.chin)) + 3
    assert np.array_equal(opened[neck:], crop[neck:])
    eye_row = int(face.eyes[0].centre[1])
    assert np.array_equal(opened[: eye_row + 5], crop[: eye_row + 5])


def test_strength_is_bounded():
    with pytest.raises(ConfigError):
        ExpressionSettings(strength=5.0)
    assert not ExpressionSettings(strength=0.0).active
    for bad in ({"eye_widen_limit": 0.8}, {"eye_usual_frames": 0}):  # a lid above its crease; no history
        with pytest.raises(ConfigError, match=next(iter(bad))):
            ExpressionSettings(**bad)


@pytest.fixture(scope="module")
def engine():
    from reenact_app.engines.select import create_engine

    eng = create_engine(None, "torch")
    yield eng
    eng.close()


def _session(engine, avatar, strength):
    from reenact_app.session import AnimationSession

    session = AnimationSession(engine, expression=ExpressionSettings(strength=strength))
    session.set_avatar(*avatar)
    return session


def test_avatar_lip_keypoints_found(engine, avatar):
    session = _session(engine, avatar, 1.0)
    face = session.expression.avatar
    assert face is not None and face.upper_lip is not None and face.lower_lip is not None
    kp = session.source.keypoints.value
    assert kp[face.upper_lip] @ face.down <= kp[face.lower_lip] @ face.down
    mouth_weights, eye_weights, _ = face.placement
    for weights in (mouth_weights, *eye_weights):  # the retargeted lips never carry a feature's placement
        assert weights[face.upper_lip] == 0 and weights[face.lower_lip] == 0 and np.isclose(weights.sum(), 1.0)
    nearest_eye_kp = int(np.argmin(np.linalg.norm((kp + 1) * face.size / 2 - face.eyes[0].centre, axis=1)))
    assert int(np.argmax(eye_weights[0])) == nearest_eye_kp  # an eye follows the keypoint on it


def test_retargeting_is_identity_at_the_neutral_frame(engine, avatar, driver):
    plain, retargeted = _session(engine, avatar, 0.0), _session(engine, avatar, 1.0)
    d = driver[NEUTRAL]
    a = plain.animate(d.crop, d.landmarks)
    b = retargeted.animate(d.crop, d.landmarks)
    assert np.array_equal(a, b)


def test_open_mouth_parts_the_lips_and_blink_closes_the_eyes(engine, avatar, driver):
    sessions = {s: _session(engine, avatar, s) for s in (0.0, 1.0)}
    for s in sessions.values():
        s.animate(driver[NEUTRAL].crop, driver[NEUTRAL].landmarks)  # calibrates
    face = sessions[1.0].expression.avatar
    d = driver[OPEN_MOUTH]
    kps = {s: sess.driving_keypoints(d.crop, d.landmarks).value for s, sess in sessions.items()}
    gap = {s: float((k[face.lower_lip] - k[face.upper_lip]) @ face.down) for s, k in kps.items()}
    assert gap[1.0] > gap[0.0] + 0.05
    b = driver[BLINK]
    plain = sessions[0.0].animate(b.crop, b.landmarks)
    shut = sessions[1.0].animate(b.crop, b.landmarks)
    for eye in face.eyes:  # each eye's box changes visibly (the lid comes down over it)
        (cx, cy), r = eye.centre.astype(int), int(eye.half_width)
        box = (slice(cy - r // 2, cy + r // 2), slice(cx - r, cx + r))
        assert np.abs(plain[box].astype(int) - shut[box]).mean() > 8.0
    assert sessions[1.0].expression.ready()


def test_calibrated_mid_word_and_mid_blink_the_baseline_adapts(engine, avatar, driver):
    """Calibrated on the open-mouth frame, then the blink frame, then the neutral one: the mouth's rest
    becomes the closed mouth seen later, the eyes' open level the open eyes seen later."""
    session = _session(engine, avatar, 1.0)
    session.animate(driver[OPEN_MOUTH].crop, driver[OPEN_MOUTH].landmarks)  # calibrates mid-word
    face = session.expression.avatar
    neutral = session.driving_keypoints(driver[NEUTRAL].crop, driver[NEUTRAL].landmarks).value
    wide = session.driving_keypoints(driver[OPEN_MOUTH].crop, driver[OPEN_MOUTH].landmarks).value
    gap = [float((k[face.lower_lip] - k[face.upper_lip]) @ face.down) for k in (neutral, wide)]
    assert gap[1] > gap[0] + 0.05  # the later open mouth opens the avatar's, relative to the closed one
    blink = _session(engine, avatar, 1.0)
    blink.animate(driver[BLINK].crop, driver[BLINK].landmarks)  # calibrates mid-blink
    blink.driving_keypoints(driver[NEUTRAL].crop, driver[NEUTRAL].landmarks)  # eyes seen open
    blink.driving_keypoints(driver[BLINK].crop, driver[BLINK].landmarks)
    assert min(blink.expression._closure) > 0.5
    blink.driving_keypoints(driver[NEUTRAL].crop, driver[NEUTRAL].landmarks)
    assert min(blink.expression._closure) == 0.0  # open eyes after a mid-blink calibration are not "wide"


def _eyes_opened_wide(landmarks: np.ndarray, by: float) -> np.ndarray:
    """The face mesh with both upper lid centres raised by `by` of each eye's lid gap."""
    wide = landmarks.copy()
    for _, _, upper, lower in EYES:
        wide[upper] += by * (landmarks[upper] - landmarks[lower])
    return wide


def test_eyes_opened_wide_raise_the_lids_until_the_stare_is_usual(avatar, driver):
    crop, mesh = avatar
    keypoints = mesh[[33, 263, 105, 334, 1, 61, 291, 13, 14, 152]] / 128.0 - 1.0  # the avatar held still
    retargeter = ExpressionRetargeter(ExpressionSettings())
    retargeter.set_avatar(mesh, keypoints, 256, crop)
    neutral = driver[NEUTRAL].landmarks
    retargeter.set_reference(neutral)
    retargeter.adjust_keypoints(keypoints, neutral)
    assert retargeter._closure == (0.0, 0.0)
    wide = _eyes_opened_wide(neutral, 0.3)
    retargeter.adjust_keypoints(keypoints, wide)
    assert all(-0.3 <= c < -0.15 for c in retargeter._closure), retargeter._closure  # beyond the dead zone
    picture = retargeter.finish(crop, keypoints, keypoints)
    for eye in retargeter.avatar.eyes:  # the picture changes at the eyes
        (cx, cy), r = eye.centre.astype(int), int(eye.half_width)
        box = (slice(cy - r, cy + r), slice(cx - r, cx + r))
        assert np.abs(picture[box].astype(int) - crop[box]).max() > 30
    collapsed = np.zeros_like(keypoints)  # a model whose keypoints collapsed: no warp, no crash
    assert np.array_equal(retargeter.finish(crop, keypoints, collapsed), crop)
    for _ in range(60):  # held for a few seconds, the stare becomes the usual opening
        retargeter.adjust_keypoints(keypoints, wide)
    assert retargeter._closure == (0.0, 0.0)
    retargeter.adjust_keypoints(keypoints, driver[BLINK].landmarks)
    assert min(retargeter._closure) > 0.5  # and a blink still shuts them


def test_no_avatar_mesh_means_no_retargeting(engine, avatar, driver):
    session = _session(engine, (avatar[0], None), 1.0)
    assert not session.expression.ready()
    plain = _session(engine, avatar, 0.0)
    for i in (NEUTRAL, OPEN_MOUTH):
        assert np.array_equal(session.animate(driver[i].crop, driver[i].landmarks),
                              plain.animate(driver[i].crop, driver[i].landmarks))


def test_retargeter_without_reference_waits_for_one(avatar):
    r = ExpressionRetargeter()
    r.set_avatar(avatar[1], np.zeros((10, 2), np.float32), 256)
    value = np.zeros((10, 2), np.float32)
    assert r.adjust_keypoints(value, avatar[1]) is value


def test_an_opening_mouth_drops_the_jaw_with_the_lower_lip():
    """The chin moves down by the lower lip's share of the gap (a jaw drops whole; a chin that stays
    while the lip moves would squash the lower face, and the face would seem to nod)."""
    image = np.full((256, 256, 3), 200, np.uint8)
    image[199:201, 100:156] = 0  # a dark chin line, centre row 199.5
    mouth = MouthShape(np.array([128.0, 150.0]), np.array([1.0, 0.0]), np.array([0.0, -1.0]), 25.0,
                       0.0, 0.0, -49.5, 25.0, (40.0, 18.0, 18.0))
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    gap, upper_share = 20.0, 0.3
    opened = open_mouth(image, mouth, gap, identity, upper_share)
    dark_rows = np.flatnonzero(opened[180:, 128, 0] < 100) + 180  # below the mouth's dark inside
    assert abs(dark_rows.mean() - (199.5 + (1.0 - upper_share) * gap)) < 1.0


@pytest.fixture(scope="module")
def faces():
    from training.metrics import load_face_models

    return load_face_models()


@pytest.fixture(scope="module")
def default_avatars(faces):
    """The 8 default avatars of the cross-identity evaluation (dlib's view of each at rest) and their
    retargeting geometry, loaded once for the dlib response tests."""
    from reenact_app.cross_eval import _load_avatar, default_avatar_paths

    avatars = [_load_avatar(path, 256, faces) for path in default_avatar_paths()]
    return [(a, AvatarFace.measure(a.mesh, np.zeros((10, 2)), 256, a.crop)) for a in avatars]


def _dlib_reads(faces, avatar, image: np.ndarray) -> dict[str, float]:
    """dlib's expression features of one warped avatar picture (measured in the avatar's own face box)."""
    from training.expression_metrics import observe_sequence

    features = observe_sequence(faces, [image], fallback_box=avatar.box).features
    return {name: float(series[0]) for name, series in features.items()}


IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def test_shut_lids_read_as_closed_by_an_independent_landmarker(faces, default_avatars):
    """dlib (not the face mesh that drives the lids) reads each default avatar's eyes as less open when
    the lids are lowered most of the way, and clearly less open on average; as more open when raised."""
    opened, lowered, widened = [], [], []
    for avatar, face in default_avatars:
        shut, wide = avatar.crop, avatar.crop
        for eye in face.eyes:
            shut = close_eye(shut, eye, 0.6, IDENTITY)
            wide = widen_eye(wide, eye, 0.3, IDENTITY)
        opened.append(avatar.track.features["eyes"][0])
        lowered.append(_dlib_reads(faces, avatar, shut)["eyes"])
        widened.append(_dlib_reads(faces, avatar, wide)["eyes"])
    assert all(b < a for a, b in zip(opened, lowered)), (opened, lowered)
    assert np.mean(lowered) < 0.8 * np.mean(opened)
    assert all(c > a for a, c in zip(opened, widened)), (opened, widened)  # and raised, more open
    assert np.mean(widened) > 1.05 * np.mean(opened)


def test_brow_lift_reads_as_a_brow_move_to_an_independent_landmarker(faces, default_avatars):
    """dlib reads each default avatar's brows higher above its eyes when lifted by 6 % of the inter-ocular
    distance and lower when lowered, by at least half of that on average (a lift that carried the eye
    along read a third)."""
    responses = []
    for avatar, face in default_avatars:
        lift = 0.06 * face.iod_px
        moved = []
        for signed in (lift, -lift):
            image = avatar.crop
            for brow in face.brows:
                image = lift_brow(image, brow, signed, IDENTITY)
            moved.append(_dlib_reads(faces, avatar, image)["brows"])
        rest = avatar.track.features["brows"][0]
        assert moved[0] > rest > moved[1], (avatar.name, moved, rest)
        responses.append((moved[0] - moved[1]) / 2.0 / 0.06)
    assert np.mean(responses) > 0.5, responses
