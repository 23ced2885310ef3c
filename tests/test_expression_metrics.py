"""Cross-identity expression metrics on cases with a known answer, on real frames of a shared clip.

d3 (LivePortrait's driving example) talks, blinks and tilts the head in its first 48 frames: mouth, eyes,
roll and yaw move beyond their noise thresholds there.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from training import expression_metrics as X
from training.mesh_warp import MeshWarp
from training.metrics import load_face_models

DRIVER_CLIP = "KwaiVGI+LivePortrait/assets/examples/driving/d3.mp4"
MOVED = ("mouth", "eyes", "roll", "yaw")  # what d3's first 48 frames move beyond the noise thresholds


def _read_frames(path: Path, count: int, every: int = 1, size: int = 256) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames, index = [], 0
    while len(frames) < count:
        ok, frame = capture.read()
        assert ok, f"{path} is shorter than expected"
        if index % every == 0:
            frame = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        index += 1
    capture.release()
    return frames


@pytest.fixture(scope="module")
def faces():
    return load_face_models()


@pytest.fixture(scope="module")
def driver_frames(clips_dir: Path) -> list[np.ndarray]:
    return _read_frames(clips_dir / DRIVER_CLIP, 24, every=2)


@pytest.fixture(scope="module")
def driver(faces, driver_frames) -> X.FaceTrack:
    return X.observe_sequence(faces, driver_frames)


def _score(driver: X.FaceTrack, output: X.FaceTrack) -> dict[str, X.FeatureScore]:
    return X.score_pair("d3", "test", driver, output, None).features


def test_the_clip_moves_the_features_the_tests_rely_on(driver):
    for name in MOVED:
        assert driver.features[name].std() > X.NOISE_THRESHOLDS[name], name
    assert driver.detected.all()


def test_driver_frames_as_output_follow_with_r_and_gain_about_one(faces, driver, driver_frames):
    """The driver's own frames, shifted by a pixel, scaled 1 % and re-saved as JPEG: a perfect follower."""
    matrix = np.float32([[1.01, 0, -0.3], [0, 1.01, -2.2]])
    jittered = []
    for frame in driver_frames:
        moved = cv2.warpAffine(frame, matrix, (256, 256), borderMode=cv2.BORDER_REPLICATE)
        jittered.append(cv2.imdecode(cv2.imencode(".jpg", moved, [cv2.IMWRITE_JPEG_QUALITY, 85])[1], cv2.IMREAD_UNCHANGED))
    scores = _score(driver, X.observe_sequence(faces, jittered))
    for name in MOVED:
        assert scores[name].counted, name
        assert scores[name].r > 0.9, (name, scores[name])
        assert 0.8 < scores[name].gain < 1.25, (name, scores[name])


def test_an_avatar_held_still_scores_zero(faces, driver, driver_frames):
    """Zero output variance: r is defined as 0 (nothing follows) and the gain is 0."""
    still = X.observe_sequence(faces, [driver_frames[0]] * len(driver_frames))
    scores = _score(driver, still)
    for name in MOVED:
        assert scores[name].counted
        assert scores[name].r == 0.0 and scores[name].gain == 0.0, (name, scores[name])
    summary = X.summarise([X.score_pair("d3", "still", driver, still, None)])
    assert summary.features["mouth"].mean_r == 0.0 and summary.features["mouth"].median_gain == 0.0
    assert summary.face_lost == 0.0


def test_a_mirrored_driver_flips_roll_and_yaw(faces, driver, driver_frames):
    mirrored = X.observe_sequence(faces, [np.ascontiguousarray(f[:, ::-1]) for f in driver_frames])
    scores = _score(driver, mirrored)
    for name in ("roll", "yaw"):
        assert scores[name].r < -0.9, (name, scores[name])
        assert 0.7 < scores[name].gain < 1.4, (name, scores[name])
    for name in ("mouth", "eyes"):  # mirror-symmetric: still followed
        assert scores[name].r > 0.8, (name, scores[name])


def test_a_feature_the_driver_does_not_move_is_not_counted():
    flat = X.follow_score(np.full(10, 0.3) + np.linspace(0, 0.001, 10), np.linspace(0, 1, 10), 0.01)
    assert not flat.counted
    summary = X.summarise([])
    assert summary.features["mouth"].pairs == 0 and summary.features["mouth"].mean_r is None


def test_features_reject_the_wrong_landmark_count():
    with pytest.raises(ValueError, match="68"):
        X.expression_features(np.zeros((468, 2)))


def test_mesh_warp_with_an_unmoving_driver_returns_the_avatar(faces, shared_dir: Path, driver):
    from reenact_app.tracking import prepare_avatar

    image = cv2.cvtColor(cv2.imread(str(Path(__file__).resolve().parent.parent / "assets/avatars/gogol.jpg")),
                         cv2.COLOR_BGR2RGB)
    avatar = prepare_avatar(image, 256).crop
    avatar_track = X.observe_sequence(faces, [avatar])
    warp = MeshWarp.build(avatar, avatar_track.landmarks[0])
    still = warp.warp(driver.landmarks[5], driver.landmarks[5])
    assert np.abs(still.astype(int) - avatar.astype(int)).max() <= 1

    # The driver's motion between two frames reaches the avatar: where d3 opens the mouth most, so does the warp.
    widest = int(np.argmax(driver.features["mouth"]))
    opened = warp.warp(driver.landmarks[widest], driver.landmarks[0])
    measured = X.observe_sequence(faces, [avatar, opened]).features["mouth"]
    driver_change = driver.features["mouth"][widest] - driver.features["mouth"][0]
    assert measured[1] - measured[0] > 0.4 * driver_change > 0


def test_evaluate_cross_cli_writes_json_and_strip(tmp_path: Path, clips_dir: Path, capsys):
    """1 prepared clip x 2 avatars x 8 frames through `reenact evaluate-cross` (app session, torch engine)."""
    from reenact_app.cli import main

    clip = tmp_path / "prepared" / "test" / "d3"
    clip.mkdir(parents=True)
    for index, frame in enumerate(_read_frames(clips_dir / DRIVER_CLIP, 8, every=3)):
        cv2.imwrite(str(clip / f"{index:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    assets = Path(__file__).resolve().parent.parent / "assets" / "avatars"
    out, strip = tmp_path / "out" / "cross.json", tmp_path / "out" / "strip.jpg"
    code = main(["evaluate-cross", str(assets / "monalisa.jpg"), str(assets / "gogol.jpg"), "--data",
                 str(tmp_path / "prepared"), "--clips", "1", "--frames", "8", "--engine", "torch", "--reference",
                 "--json", str(out), "--strip", str(strip), "--threads", "2", "--no-progress"])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["clips"] == ["d3"] and report["avatars"] == ["monalisa", "gogol"]
    assert len(report["pairs"]["model"]) == 2 and len(report["pairs"]["mesh_warp"]) == 2
    for row in ("model", "mesh_warp"):
        summary = report["summary"][row]
        assert summary["frames"] == 16 and 0.0 <= summary["face_lost"] <= 1.0
        assert 0.0 < summary["identity_distance"] < 1.0
    assert set(report["model_by_avatar"]) == {"monalisa", "gogol"}
    assert report["model_by_avatar"]["gogol"]["pairs"] == 1
    pair = report["pairs"]["mesh_warp"][0]["features"]["mouth"]
    assert pair["counted"] and pair["r"] > 0.5  # the warp moves the lips exactly
    image = cv2.imread(str(strip))
    assert image is not None
    assert (image.shape[0] // 192, image.shape[1] // 192) == (4, 6)  # driver, 2 avatars, mesh warp; 6 columns
    printed = capsys.readouterr().out
    assert "| model (bundled weights, expression 1) |" in printed and "| mesh-warp reference |" in printed


def test_evaluate_cross_cli_missing_avatar_is_one_clear_error(tmp_path: Path, capsys):
    from reenact_app.cli import main

    code = main(["evaluate-cross", str(tmp_path / "nobody.jpg"), "--data", str(tmp_path), "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "avatar image(s) not found" in err[0] and "nobody.jpg" in err[0]


def test_strip_columns_are_the_neutral_frame_the_widest_mouths_and_the_blinks(driver):
    from training.expression_strip import pick_columns

    mouth, eyes = driver.features["mouth"], driver.features["eyes"]
    columns = pick_columns(mouth, eyes, count=6, min_gap=2)
    assert columns[0] == 0 and len(columns) == 6 and columns == sorted(set(columns))
    assert int(np.argmax(mouth)) in columns and int(np.argmin(eyes)) in columns
    assert all(b - a >= 2 for a, b in zip(columns, columns[1:]))


def test_the_most_neutral_frame_is_not_an_open_mouth(faces, driver_frames):
    """A clip that starts mid-word (its widest-mouth frame put first): calibrating at rest skips that frame."""
    mouth_first = X.observe_sequence(faces, driver_frames)
    widest = int(np.argmax(mouth_first.features["mouth"]))
    reordered = X.observe_sequence(faces, [driver_frames[widest]] + driver_frames)
    neutral = X.most_neutral_frame(reordered)
    assert neutral != 0
    assert reordered.features["mouth"][neutral] < np.median(reordered.features["mouth"])
    assert reordered.features["eyes"][neutral] >= np.median(reordered.features["eyes"])


def test_evaluate_cross_cli_missing_data_is_one_clear_error(tmp_path: Path, capsys):
    from reenact_app.cli import main

    avatar = Path(__file__).resolve().parent.parent / "assets" / "avatars" / "gogol.jpg"
    code = main(["evaluate-cross", str(avatar), "--data", str(tmp_path / "nothing"), "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data folder not found" in err[0] and "prepare-data" in err[0]
