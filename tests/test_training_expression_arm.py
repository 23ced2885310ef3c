"""Expression arm of training: keypoints grown from the shipped weights, jacobians taught by local affine
fits of face-mesh neighbourhoods, and the arm's config running end to end (init, checkpoint, resume)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from training.config import TeacherConfig, load_train_config
from training.cross_identity import landmark_motion_target, movement_scale, relative_keypoints
from training.dataset import MIRROR, pixels_to_grid
from training.keypoint_growth import grow_keypoints, nearest_parents
from training.local_affine import (fit_local_affines, jacobian_landmark_loss, local_affine_targets,
                                   mirrored_neighbourhoods, neighbourhoods, relative_jacobians)
from training.teacher import keypoint_weight

REPO = Path(__file__).resolve().parent.parent
CLIP = "AliaksandrSiarohin+first-order-model/demo_old/08.mp4"  # 256 x 256, one face; blinks at frame 140
OPEN, BLINK = 130, 140
SHIPPED_ANCHORS = (33, 263, 105, 334, 1, 61, 291, 13, 14, 152)
LIDS = (159, 145, 386, 374)


@pytest.fixture(scope="module")
def frames_and_landmarks(clips_dir: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames 0, OPEN and BLINK (RGB uint8) and their mediapipe meshes in [-1, 1] (478, 2)."""
    import cv2
    import mediapipe as mp

    from training.dataset import pixels_to_grid

    capture = cv2.VideoCapture(str(clips_dir / CLIP))
    frames = []
    for index in range(BLINK + 1):
        ok, frame = capture.read()
        assert ok, f"{CLIP} ended at frame {index}"
        if index in (0, OPEN, BLINK):
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    meshes = []
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True) as mesh:
        for frame in frames:
            points = mesh.process(frame).multi_face_landmarks[0].landmark
            pixels = np.array([(p.x, p.y) for p in points], np.float32) * frame.shape[1]
            meshes.append(pixels_to_grid(pixels, frame.shape[1], frame.shape[1]))
    return frames, meshes


# ------------------------------------------------------------------------------------------- growth
def test_lid_keypoints_split_off_the_eye_keypoints_on_a_real_face(frames_and_landmarks) -> None:
    _, meshes = frames_and_landmarks
    parents = nearest_parents(meshes[0], SHIPPED_ANCHORS, LIDS)
    assert parents == [0, 0, 1, 1]  # 159/145 from 33 (same eye), 386/374 from 263


def test_grown_shipped_model_keeps_its_keypoints_and_output_on_a_real_frame(frames_and_landmarks, tmp_path) -> None:
    from models import load_checkpoint, save_checkpoint

    frames, _ = frames_and_landmarks
    source, driving = (torch.from_numpy(f.astype(np.float32) / 255).permute(2, 0, 1)[None] for f in frames[:2])
    shipped = load_checkpoint(REPO / "assets" / "weights" / "default.safetensors").eval()
    grown = grow_keypoints(shipped, 14, [0, 0, 1, 1]).eval()
    path = save_checkpoint(grown, tmp_path / "grown.safetensors")
    reloaded = load_checkpoint(path).eval()  # shapes of every grown weight load strictly
    assert reloaded.config.num_kp == 14 and reloaded.config.replace(num_kp=10) == shipped.config
    with torch.no_grad():
        old_s, old_d = shipped.kp_detector(source), shipped.kp_detector(driving)
        new_s, new_d = reloaded.kp_detector(source), reloaded.kp_detector(driving)
        for old, new in ((old_s, new_s), (old_d, new_d)):
            for key in ("value", "jacobian"):
                torch.testing.assert_close(new[key][:, :10], old[key], rtol=0, atol=1e-6)
                torch.testing.assert_close(new[key][:, 10:], old[key][:, [0, 0, 1, 1]], rtol=0, atol=1e-6)
        before = shipped.generator(source, kp_driving=old_d, kp_source=old_s)
        after = reloaded.generator(source, kp_driving=new_d, kp_source=new_s)
    # The flow and occlusion are the shipped model's (only the spatial attention's channel mean moves a little)
    assert (after["deformation"] - before["deformation"]).abs().max() < 2e-3
    for a, b in zip(after["occlusion_map"], before["occlusion_map"]):
        assert (a - b).abs().max() < 1e-4
    assert (after["prediction"] - before["prediction"]).abs().mean() < 2e-4
    # keypoint 0's mask share is split between it and its two copies (mask channel 0 is the background)
    before_mask, after_mask = before["mask"], after["mask"]
    assert (after_mask[:, 1] + after_mask[:, 11] + after_mask[:, 12] - before_mask[:, 1]).abs().max() < 5e-3
    assert (after_mask[:, 11] - after_mask[:, 1]).abs().max() < 5e-3 and after_mask[:, 11].max() > 0.05
    assert (after_mask[:, 3:11] - before_mask[:, 3:11]).abs().max() < 5e-3


def test_growing_checks_its_parents() -> None:
    from models import build_model
    from reenact_common.errors import ConfigError

    model = build_model("paper-rt")
    with pytest.raises(ConfigError, match="parents"):
        grow_keypoints(model, 12, [0])
    with pytest.raises(ConfigError, match="old keypoints"):
        grow_keypoints(model, 11, [10])


# ------------------------------------------------------------------------------------------- local affines
def _random_affine(generator: torch.Generator) -> torch.Tensor:
    angle = float(torch.rand(1, generator=generator)) * 2 - 1
    rotation = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return rotation @ torch.diag(torch.rand(2, generator=generator) + 0.5) @ torch.tensor([[1.0, 0.3], [0.0, 1.0]])


def test_fit_recovers_an_exact_affine_and_the_loss_scores_jacobians() -> None:
    generator = torch.Generator().manual_seed(0)
    b, k = 3, 5
    driving = torch.rand(b, 478, 2, generator=generator) * 1.6 - 0.8
    affines = torch.stack([_random_affine(generator) for _ in range(b)])  # one map per sample
    shift = torch.rand(b, 1, 2, generator=generator) * 0.2
    source = driving @ affines.transpose(-1, -2) + shift  # source = A driving + t, every landmark
    canonical = driving[0].numpy()
    anchors = (33, 263, 1, 13, 152)
    plain = torch.from_numpy(neighbourhoods(canonical, anchors, 10))
    mirrored = torch.from_numpy(mirrored_neighbourhoods(canonical, anchors, 10))
    assert plain.shape == (k, 10) and all(plain[i, 0] == a for i, a in enumerate(anchors))
    assert mirrored[0, 0] == MIRROR[33] and mirrored[2, 0] == 1
    targets, valid = local_affine_targets(driving, source, plain, mirrored, torch.tensor([False, True, False]))
    assert valid.all()
    torch.testing.assert_close(targets, affines.view(b, 1, 2, 2).expand(b, k, 2, 2), rtol=0, atol=1e-5)

    j_driving = torch.stack([_random_affine(generator) for _ in range(b * k)]).view(b, k, 2, 2)
    j_source = affines.view(b, 1, 2, 2) @ j_driving  # J_s inv(J_d) = A exactly
    found = torch.ones(b, dtype=torch.bool)
    exact = jacobian_landmark_loss(j_source, j_driving, targets, valid, found)
    wrong = jacobian_landmark_loss(j_driving, j_driving, targets, valid, found)  # identity relative map
    assert exact.item() < 1e-5 and wrong.item() > 0.1
    expected = (torch.eye(2) - affines).abs().sum(dim=(-1, -2)).mean()
    assert wrong.item() == pytest.approx(expected.item(), rel=1e-4)
    assert jacobian_landmark_loss(j_driving, j_driving, targets, valid, torch.zeros(b, dtype=torch.bool)).item() == 0


def test_collinear_neighbourhoods_are_not_fitted() -> None:
    line = torch.linspace(-0.5, 0.5, 10).view(1, 10, 1).expand(1, 10, 2).contiguous()
    affine, valid = fit_local_affines(line, line * 2)
    assert not valid.any() and torch.isfinite(affine).all()


def test_real_blink_squashes_the_lid_fits_and_not_the_nose(frames_and_landmarks) -> None:
    _, meshes = frames_and_landmarks
    anchors = (159, 145, 386, 374, 1, 152)
    plain = torch.from_numpy(neighbourhoods(meshes[0], anchors, 10))
    mirrored = torch.from_numpy(mirrored_neighbourhoods(meshes[0], anchors, 10))
    opened, blink = (torch.from_numpy(m)[None] for m in meshes[1:])
    same, valid_same = local_affine_targets(opened, opened, plain, mirrored, torch.tensor([False]))
    assert valid_same.all()
    torch.testing.assert_close(same, torch.eye(2).expand_as(same), rtol=0, atol=1e-5)
    # driving = open eyes, source = the blink: the lids' vertical scale collapses, the nose and chin stay
    fitted, valid = local_affine_targets(opened, blink, plain, mirrored, torch.tensor([False]))
    assert valid.all() and torch.isfinite(fitted).all()
    vertical = fitted[0, :, 1, 1]
    # (an upper-lid centre's nearest mesh points mostly slide down together: less squash there than below)
    assert int((vertical[:4] < 0.75).sum()) >= 3 and vertical[:4].mean() < 0.7, vertical
    assert ((vertical[4:] > 0.85) & (vertical[4:] < 1.15)).all(), vertical
    loss = jacobian_landmark_loss(torch.eye(2).expand(1, 6, 2, 2), torch.eye(2).expand(1, 6, 2, 2), fitted, valid,
                                  torch.tensor([True]))
    assert math.isfinite(loss.item()) and loss.item() > 0
    torch.testing.assert_close(relative_jacobians(fitted, torch.eye(2).expand_as(fitted)), fitted)


# ------------------------------------------------------------------------------------------- the arm's config
def test_expression_config_holds_the_landmark_pull_and_adds_the_lids() -> None:
    config = load_train_config(REPO / "configs" / "train" / "paper-rt-expression.yaml")
    teacher = config.teacher
    assert config.model_config().num_kp == 14 and teacher.landmark_indices == SHIPPED_ANCHORS + LIDS
    assert keypoint_weight(teacher, 10**6) == keypoint_weight(teacher, teacher.warmup_steps) == 10.0
    assert teacher.jacobian_weight > 0 and config.cross_identity_share == 0.25


def test_expression_training_grows_init_weights_checkpoints_and_resumes(tmp_path: Path) -> None:
    """The arm's recipe on the tiny model: --init with 10 keypoints grows to 14, the jacobian term and
    cross-identity pairs train, a stopped run resumes to the same weights as a straight one."""
    from models import build_model, load_checkpoint, save_checkpoint
    from tests.test_training_trainer import make_synthetic_data, tiny_config
    from training.trainer import TrainOptions, train

    data = make_synthetic_data(tmp_path / "data")
    teacher = TeacherConfig(landmark_indices=SHIPPED_ANCHORS + LIDS, warmup_steps=1, keypoint_weight_end=10.0,
                            jacobian_weight=1.0)
    config = tiny_config(teacher=teacher, max_steps=3, val_every=0, cross_identity_share=0.5)
    config = config.replace(model_overrides={**config.model_overrides, "num_kp": 14})
    torch.manual_seed(1)
    init = save_checkpoint(build_model(tiny_config().model_config()), tmp_path / "ten.safetensors")
    straight = train(config, data, tmp_path / "a", init=init, device="cpu")
    train(config, data, tmp_path / "b", init=init, device="cpu", options=TrainOptions(stop_at_step=2))
    resumed = train(config, data, tmp_path / "b", init=init, resume=True, device="cpu")
    assert resumed["steps"] == 3
    for key, value in straight["state"].items():
        assert torch.equal(value, resumed["state"][key]), key
    assert load_checkpoint(tmp_path / "a" / "final.safetensors").config.num_kp == 14
    with open(tmp_path / "a" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    jacobian_terms = [float(r["value"]) for r in rows if r["name"] == "teacher_jacobians"]
    assert all(math.isfinite(float(r["value"])) for r in rows if r["name"] == "teacher_motion")
    # translation-only synthetic motion: the fitted affines are the identity, the detector's jacobians leave it
    assert len(jacobian_terms) == 3 and all(math.isfinite(v) for v in jacobian_terms) and max(jacobian_terms) > 0


# ------------------------------------------------------------------------------------------- cross-identity pairs
def test_relative_motion_from_the_source_itself_is_the_absolute_motion() -> None:
    generator = torch.Generator().manual_seed(3)
    kp = [{"value": torch.rand(2, 4, 2, generator=generator) * 2 - 1,
           "jacobian": torch.stack([_random_affine(generator) for _ in range(8)]).view(2, 4, 2, 2)} for _ in range(3)]
    source, driving, neutral = kp
    same = relative_keypoints(source, driving, source, torch.ones(2))
    torch.testing.assert_close(same["value"], driving["value"])
    torch.testing.assert_close(same["jacobian"], driving["jacobian"], rtol=1e-5, atol=1e-5)
    moved = relative_keypoints(source, driving, neutral, torch.tensor([2.0, 0.5]))
    expected = source["value"] + torch.tensor([2.0, 0.5]).view(2, 1, 1) * (driving["value"] - neutral["value"])
    torch.testing.assert_close(moved["value"], expected)
    # the generator's local map J_s inv(J_relative) is the driver's J_n inv(J_d), whatever the source
    local = relative_jacobians(source["jacobian"], moved["jacobian"])
    driver_local = relative_jacobians(neutral["jacobian"], driving["jacobian"])
    torch.testing.assert_close(local, driver_local, rtol=1e-4, atol=1e-4)


def test_landmark_target_moves_the_source_by_the_drivers_scaled_motion(frames_and_landmarks) -> None:
    """Real meshes: the driver (this clip) blinks between its open frame (neutral) and the blink; a source
    face twice as large (the same mesh scaled about its centre) must close its lids twice as far."""
    _, meshes = frames_and_landmarks
    neutral, driving = (torch.from_numpy(m)[None] for m in meshes[1:])
    centre = neutral.mean(1, keepdim=True)
    source = (neutral - centre) * 2 + centre * 0.5
    scale = movement_scale(source, neutral)
    torch.testing.assert_close(scale, torch.tensor([2.0]))
    target = landmark_motion_target(source, driving, neutral, scale)
    lid_gap = lambda m: (m[0, 145, 1] - m[0, 159, 1]).item()  # noqa: E731 - left eye, lower minus upper lid
    assert lid_gap(driving) < 0.5 * lid_gap(neutral)
    assert lid_gap(target) == pytest.approx(lid_gap(source) + 2 * (lid_gap(driving) - lid_gap(neutral)), abs=1e-5)
    assert movement_scale(neutral, neutral).item() == 1.0


def test_dataset_cross_identity_samples_pair_two_people(tmp_path: Path) -> None:
    from tests.test_training_trainer import make_synthetic_data
    from training.dataset import PairDataset, scan_clips

    data = make_synthetic_data(tmp_path / "data", clips=4)
    clips = {c.id: c for c in scan_clips(data, "train")}
    first_frames = {cid: c.landmarks[0] for cid, c in clips.items()}
    plain = PairDataset(data, "train", 64, seed=0, augment=False)
    assert "cross" not in plain[0] and "driving_neutral" not in plain[0]
    dataset = PairDataset(data, "train", 64, seed=0, augment=False, cross_identity_share=0.5)
    samples = [dataset[i] for i in range(24)]
    cross = [s for s in samples if s["cross"]]
    same = [s for s in samples if not s["cross"]]
    assert 4 <= len(cross) <= 20 and same
    for sample in same:
        assert torch.equal(sample["driving_neutral"], sample["source"])
        assert torch.equal(sample["driving_neutral_landmarks"], sample["source_landmarks"])
    size = clips["clip0"].landmark_size
    for sample in cross:
        neutral_clip = [cid for cid, lm in first_frames.items()
                        if np.allclose(sample["driving_neutral_landmarks"].numpy(), pixels_to_grid(lm, size, 64))]
        assert len(neutral_clip) == 1  # the driver's first frame is its neutral frame
        driver = clips[neutral_clip[0]]
        source_clip = [cid for cid, c in clips.items()
                       if any(np.allclose(sample["source_landmarks"].numpy(), pixels_to_grid(f, size, 64))
                              for f in c.landmarks)]
        assert source_clip and driver.id not in source_clip
        driving = sample["driving_landmarks"].numpy()
        assert any(np.allclose(driving, pixels_to_grid(f, size, 64)) for f in driver.landmarks)
    again = dataset[samples.index(cross[0])]
    assert all(torch.equal(again[k], cross[0][k]) for k in again)


# ------------------------------------------------------------------------------------------- paired reports
def _report(rows: dict[tuple[str, str], dict[str, tuple[float, float, bool]]]) -> dict:
    return {"pairs": {"model": [
        {"clip": clip, "avatar": avatar,
         "features": {f: {"r": r, "gain": g, "counted": c} for f, (r, g, c) in feats.items()}}
        for (clip, avatar), feats in rows.items()]}}


def test_paired_comparison_uses_only_pairs_both_reports_count(tmp_path: Path, capsys) -> None:
    import json

    from reenact_common.errors import ConfigError
    from training.cross_pairs import compare, main

    base = _report({("a", "x"): {"mouth": (0.2, 0.3, True), "eyes": (0.1, 0.4, True)},
                    ("b", "x"): {"mouth": (0.4, 0.5, True), "eyes": (0.0, 0.2, False)},
                    ("c", "x"): {"mouth": (0.9, 0.9, True), "eyes": (0.5, 0.5, True)}})
    arm = _report({("a", "x"): {"mouth": (0.6, 0.7, True), "eyes": (0.3, 0.4, True)},
                   ("b", "x"): {"mouth": (0.5, 0.9, True), "eyes": (0.9, 0.9, True)},
                   ("d", "x"): {"mouth": (0.0, 0.0, True), "eyes": (0.0, 0.0, True)}})
    result = compare(base, arm)
    mouth, eyes = result["mouth"], result["eyes"]
    assert mouth.pairs == 2 and mouth.r_difference == pytest.approx(0.25) and mouth.r_higher == 2
    assert mouth.r_difference_se == pytest.approx(0.15) and mouth.gain_difference == pytest.approx(0.4)
    assert eyes.pairs == 1 and eyes.r_difference == pytest.approx(0.2) and math.isnan(eyes.r_difference_se)
    with pytest.raises(ConfigError, match="share no"):
        compare(base, _report({("z", "x"): {"mouth": (0.0, 0.0, True)}}))
    paths = [tmp_path / "base.json", tmp_path / "arm.json"]
    for path, report in zip(paths, (base, arm)):
        path.write_text(json.dumps(report))
    assert main([str(paths[0]), str(paths[1]), "--json", str(tmp_path / "paired.json")]) == 0
    assert "| mouth | 2 | 0.30 -> 0.55 | +0.250 ± 0.150 | 2/2 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "paired.json").read_text())["mouth"]["pairs"] == 2


def test_cross_identity_rows_get_no_pixel_loss_but_landmark_motion(tmp_path: Path) -> None:
    from models import build_model
    from tests.test_training_trainer import make_synthetic_data, tiny_config
    from training.dataset import PairDataset
    from training.trainer import TrainingModel

    data = make_synthetic_data(tmp_path / "data")
    config = tiny_config(cross_identity_share=0.5)
    dataset = PairDataset(data, "train", 64, seed=0, augment=False, cross_identity_share=0.5)
    samples = [dataset[i] for i in range(6)]
    torch.manual_seed(0)
    model = build_model(config.model_config())
    tm = TrainingModel(model.kp_detector, model.generator, config, None)
    only_cross = torch.utils.data.default_collate([s for s in samples if s["cross"]][:2])
    losses, extras = tm(only_cross, step=5)
    assert "l1" not in losses and losses["pixel_free_batch"].item() == 0.0 and losses["teacher_motion"].item() > 0
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in tm.generator.parameters() if p.requires_grad)
    cross_rows, same_rows = [s for s in samples if s["cross"]], [s for s in samples if not s["cross"]]
    mixed = torch.utils.data.default_collate(cross_rows[:1] + same_rows[:1])
    losses, _ = tm(mixed, step=5)
    assert "l1" in losses and "pixel_free_batch" not in losses
