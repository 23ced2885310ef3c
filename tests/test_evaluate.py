"""`reenact evaluate`: FOMM reconstruction protocol, dlib metrics, static baseline, JSON report, errors.

All on real frames from the shared clips and stills; a tiny test split (2 clips x 4 frames) keeps it fast.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest

import torch
from torch import nn

from training import metrics as M
from training.evaluate import EvaluationDataError, evaluate, evaluate_checkpoint, find_clips, select_clips

FRAMES_PER_CLIP = 4
METRIC_KEYS = ("l1", "akd", "aed", "mkr")


def _rgb(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path))
    assert image is not None, path
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, clips_dir: Path) -> Path:
    """DIR/test with one PNG frame folder (frames 6 apart, so there is motion) and one mp4 (upstream layout)."""
    import cv2

    root = tmp_path_factory.mktemp("evaldata")
    test = root / "test"
    folder = test / "dreamtalk_W009_happy"
    folder.mkdir(parents=True)
    capture = cv2.VideoCapture(str(clips_dir / "ali-vilab+dreamtalk/data/style_clip/video/W009_front_happy_level3_001.mp4"))
    index = written = 0
    while written < FRAMES_PER_CLIP:
        ok, frame = capture.read()
        assert ok, "shared clip too short"
        if index % 6 == 0:
            cv2.imwrite(str(folder / f"{written:05d}.png"), frame)
            written += 1
        index += 1
    capture.release()
    (test / "lia_driving2.mp4").symlink_to(clips_dir / "wyhsirius+LIA/data/vox/driving2.mp4")
    return root


@pytest.fixture(scope="module")
def faces() -> M.FaceModels:
    return M.load_face_models()


class _FixedKeypoints(nn.Module):
    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        n = image.shape[0]
        return {"value": torch.zeros(n, 10, 2), "jacobian": torch.eye(2).expand(n, 10, 2, 2)}


class _IdentityGenerator(nn.Module):
    """Ignores the driving keypoints: the prediction is the source image itself."""

    def forward(self, source_image, kp_driving, kp_source):
        assert kp_driving["value"].shape[0] == source_image.shape[0] == kp_source["value"].shape[0]
        return {"prediction": source_image.clone()}


class _IdentityModel:
    def __init__(self) -> None:
        self.kp_detector = _FixedKeypoints()
        self.generator = _IdentityGenerator()


def test_identity_model_scores_exactly_the_static_baseline(tiny_data: Path) -> None:
    model = _IdentityModel()
    model.generator.train()
    model.kp_detector.eval()
    report = evaluate(model, tiny_data, max_frames=FRAMES_PER_CLIP, batch_size=3, progress=False)

    assert model.generator.training and not model.kp_detector.training  # the trainer's modes are restored
    assert [c.clip_id for c in report.clips] == ["dreamtalk_W009_happy", "lia_driving2"]
    assert report.model.frames == 2 * FRAMES_PER_CLIP
    for clip in [*report.clips, report]:
        assert clip.model == clip.baseline
    # the baseline is not trivially zero: the frames really move
    assert report.baseline.l1 > 0.005 and report.baseline.akd > 0.5
    assert report.baseline.real_faces == report.baseline.frames  # HOG finds every real face
    assert report.baseline.mkr == 0.0


class _ForwardOnly(nn.Module):
    """Hides `encode_source`/`animate`: reconstruct must fall back to calling the generator."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.inner = generator

    def forward(self, source_image, kp_driving, kp_source):
        return self.inner(source_image, kp_driving=kp_driving, kp_source=kp_source)


@pytest.mark.parametrize("blend", [False, True])
def test_reconstruct_encodes_the_avatar_once_with_the_same_frames(tiny_data: Path, blend: bool) -> None:
    import dataclasses

    from models import load_checkpoint
    from training.evaluate import reconstruct

    model = load_checkpoint().eval()  # the shipped weights: a random model barely moves
    model.set_warped_source_blend(blend)
    frames = find_clips(tiny_data)[0].read_frames(256, max_frames=FRAMES_PER_CLIP)
    calls = []
    encode = model.generator.encode_source
    model.generator.encode_source = lambda *a, **k: calls.append(1) or encode(*a, **k)

    cached = reconstruct(model, frames, batch_size=3)  # chunks of 3 + 1
    plain = reconstruct(dataclasses.replace(model, generator=_ForwardOnly(model.generator)), frames, batch_size=3)

    assert len(calls) == 1 + 2  # once per clip cached; once per chunk through forward
    assert len(cached) == len(plain) == FRAMES_PER_CLIP
    for a, b in zip(cached, plain):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.abs(cached[-1] - cached[0]).mean() > 1e-3  # the frames differ: the driving really drives


def test_metrics_of_a_frame_against_itself_and_a_shifted_copy(tiny_data: Path, faces: M.FaceModels) -> None:
    import cv2

    image = _rgb(tiny_data / "test/dreamtalk_W009_happy/00000.png")
    real = faces.observe(image)
    assert real.detected and real.landmarks.shape == (68, 2) and real.embedding.shape == (128,)

    same = M.observe_generated(faces, image.copy(), real)
    assert M.keypoint_distance(same.landmarks, real.landmarks, 256) == 0.0
    assert M.embedding_distance(same.embedding, real.embedding) == 0.0
    assert M.l1_error(image / 255.0, image / 255.0) == 0.0

    dx, dy = 6, 4
    shifted = cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), (256, 256), borderMode=cv2.BORDER_REPLICATE)
    moved = M.observe_generated(faces, shifted, real)  # the protocol's path: the real frame's box
    akd = M.keypoint_distance(moved.landmarks, real.landmarks, 256)
    assert 0.7 * math.hypot(dx, dy) < akd < 1.3 * math.hypot(dx, dy)
    assert moved.detected  # a shifted face is still a face (no MKR miss)
    # AKD is in pixels at 256 whatever the evaluation size
    assert M.keypoint_distance(moved.landmarks / 2, real.landmarks / 2, 128) == pytest.approx(akd)

    blank = M.observe_generated(faces, np.full_like(image, 128), real)
    assert not blank.detected  # a face lost in the generated frame counts for MKR
    score = M.compare(image / 255.0, real, np.full(image.shape, 0.5), blank)
    assert score.missing and M.MetricSet.from_scores([score]).mkr == 1.0


def test_identity_distance_same_person_small_different_people_large(shared_dir: Path, faces: M.FaceModels) -> None:
    examples = shared_dir / "data/stills/ageitgey+face_recognition/examples"
    obama, obama2, biden = (faces.observe(_rgb(examples / name)) for name in ("obama.jpg", "obama2.jpg", "biden.jpg"))
    assert obama.detected and obama2.detected and biden.detected
    assert M.embedding_distance(obama.embedding, obama.embedding) == 0.0
    same_person = M.embedding_distance(obama.embedding, obama2.embedding)
    different = M.embedding_distance(obama.embedding, biden.embedding)
    assert same_person < 0.6 < different  # dlib's documented same-person threshold
    assert different > 1.5 * same_person


def test_cli_writes_a_well_formed_report_for_a_real_checkpoint(tiny_data: Path, tmp_path: Path, capsys) -> None:
    from models import build_model, save_checkpoint
    from reenact_app.commands import evaluate as command

    checkpoint = save_checkpoint(build_model("paper-rt"), tmp_path / "random.safetensors")
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    out = tmp_path / "reports" / "eval.json"
    args = parser.parse_args(["evaluate", "--checkpoint", str(checkpoint), "--data", str(tiny_data),
                              "--json", str(out), "--max-frames", "2", "--clips", "1", "--spread", "--threads", "1"])
    assert args.func(args) == 0

    report = json.loads(out.read_text())
    assert report["protocol"] == "fomm-reconstruction"
    assert report["checkpoint"] == str(checkpoint) and report["image_size"] == 256
    assert report["frames_per_clip"] == {"max": 2, "sampling": "spread"}
    assert len(report["clips"]) == 1 and report["clips"][0]["frames"] == 2
    for part in ("model", "static_baseline"):
        values = report["overall"][part]
        assert set(METRIC_KEYS) <= set(values)
        assert all(math.isfinite(values[key]) for key in METRIC_KEYS)
    assert report["overall"]["static_baseline"] == report["clips"][0]["static_baseline"]
    assert "68" in report["metric_models"]["landmarks"]
    assert report["timing"]["model_seconds_per_frame"] > 0
    printed = capsys.readouterr().out
    assert "static baseline" in printed and str(out) in printed


def test_evaluate_checkpoint_returns_a_json_ready_dict(tiny_data: Path) -> None:
    report = evaluate_checkpoint(_IdentityModel(), tiny_data, max_frames=1, max_clips=1, progress=False)
    json.dumps(report)  # no numpy scalars or dataclasses left
    # frame 0 driven by itself: both the identity model and the baseline reproduce it exactly
    assert report["overall"]["model"]["l1"] == 0.0 and report["overall"]["model"]["akd"] == 0.0


def test_clear_errors_for_missing_or_empty_data(tmp_path: Path) -> None:
    with pytest.raises(EvaluationDataError, match="data folder not found.*prepare-data"):
        evaluate_checkpoint(_IdentityModel(), tmp_path / "nope", progress=False)
    with pytest.raises(EvaluationDataError, match="no 'test/' folder"):
        find_clips(tmp_path)
    (tmp_path / "test" / "empty_clip").mkdir(parents=True)
    (tmp_path / "test" / "notes.txt").write_text("not a clip")
    with pytest.raises(EvaluationDataError, match="no clips in"):
        find_clips(tmp_path)


def test_clip_selection_spreads_over_the_split(tmp_path: Path) -> None:
    for name in "abcdefg":
        (tmp_path / "test").mkdir(exist_ok=True)
        (tmp_path / "test" / f"{name}.mp4").write_bytes(b"")
    clips = find_clips(tmp_path)
    assert [c.clip_id for c in select_clips(clips, 3)] == ["a", "d", "g"]
    assert select_clips(clips, None) == clips


def test_spread_sampling_and_the_reference_cache(tiny_data: Path) -> None:
    """--spread takes frames over the whole clip (frame 0 first); the cache changes no number."""
    from training.evaluate import ReferenceCache, find_clips, spread_indices

    assert spread_indices(100, 4) == [0, 33, 66, 99]
    assert spread_indices(3, 8) == [0, 1, 2] and spread_indices(0, 4) == []
    video = next(c for c in find_clips(tiny_data) if c.clip_id == "lia_driving2")
    first, spread = video.read_frames(64, 3), video.read_frames(64, 3, spread=True)
    assert np.array_equal(first[0], spread[0])  # the protocol's source is frame 0 either way
    assert not np.array_equal(first[2], spread[2])  # the last pick comes from the clip's end

    model = _IdentityModel()
    cache = ReferenceCache()
    plain = evaluate(model, tiny_data, max_frames=3, spread=True, progress=False)
    cached = [evaluate(model, tiny_data, max_frames=3, spread=True, progress=False, cache=cache) for _ in range(2)]
    assert len(cache.entries) == 2
    for report in cached:
        assert report.model == plain.model and report.baseline == plain.baseline
    as_dict = plain.to_dict()
    assert as_dict["frames_per_clip"] == {"max": 3, "sampling": "spread"}
    se = as_dict["overall"]["model_clip_standard_error"]
    assert set(se) == {"l1", "akd", "aed"} and all(math.isfinite(v) and v >= 0 for v in se.values())
