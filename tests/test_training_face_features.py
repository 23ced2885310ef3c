"""The face-mesh perceptual loss: mediapipe's bundled face-mesh CNN run in PyTorch must be the same network
(its landmarks agree with mediapipe's on a real face), and the loss must punish blur and train the image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from reenact_common.errors import ConfigError
from tests.conftest import bgr_frames
from training.config import FACE_PERCEPTUAL_ON, LossWeights, TrainConfig
from training.face_features import INPUT_SIZE, NUM_TAPS, FaceMeshFeatures
from training.losses import ReconstructionLoss

CLIP = "rizkiarm+LipNet/evaluation/samples/GRID/bbaf2n.mpg"  # real talking-head frames (GRID)


@pytest.fixture(scope="module")
def net() -> FaceMeshFeatures:
    return FaceMeshFeatures()


@pytest.fixture(scope="module")
def face_crops(clips_dir):
    """Two real frames cropped around mediapipe's own mesh (1.5x its extent, 192 px), and that mesh in
    crop pixels: the reference the converted network must reproduce."""
    import mediapipe as mp

    crops, meshes = [], []
    frames = bgr_frames(clips_dir / CLIP, 30)
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as face_mesh:
        for bgr in (frames[0], frames[29]):
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            found = face_mesh.process(rgb).multi_face_landmarks
            assert found, "mediapipe found no face in a GRID frame"
            h, w = rgb.shape[:2]
            mesh = np.array([[p.x * w, p.y * h] for p in found[0].landmark])[:468]
            (x0, y0), (x1, y1) = mesh.min(0), mesh.max(0)
            scale = INPUT_SIZE / (1.5 * max(x1 - x0, y1 - y0))
            affine = np.array([[scale, 0, INPUT_SIZE / 2 - scale * (x0 + x1) / 2],
                               [0, scale, INPUT_SIZE / 2 - scale * (y0 + y1) / 2]])
            crops.append(cv2.warpAffine(rgb, affine, (INPUT_SIZE, INPUT_SIZE)))
            meshes.append(mesh @ affine[:, :2].T + affine[:, 2])
    return torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255, np.stack(meshes)


def test_converted_network_reproduces_mediapipe_landmarks_on_real_faces(net, face_crops):
    images, meshes = face_crops
    with torch.no_grad():
        points, score = net.landmarks_and_score(images)
        _, noise_score = net.landmarks_and_score(torch.rand(2, 3, INPUT_SIZE, INPUT_SIZE, generator=torch.Generator().manual_seed(0)))
    error = np.linalg.norm(points[..., :2].numpy() - meshes, axis=-1)
    assert error.mean() < 2.0, f"mean landmark distance {error.mean():.2f} px of 192 (a broken conversion: tens)"
    assert (score > 5).all() and (noise_score < 0).all(), (score, noise_score)  # face presence logit


def test_features_are_frozen_and_cost_no_checkpoint_space(net):
    assert not list(net.parameters()) and not net.state_dict()
    net.train()
    assert not net.training
    features = net(torch.rand(1, 3, 256, 256))
    assert [f.shape[-1] for f in features] == [96, 48, 24, 12][:NUM_TAPS]


def test_face_perceptual_loss_punishes_blur_and_trains_the_image(net, face_crops):
    images, _ = face_crops
    loss = ReconstructionLoss((1.0, 0.5), LossWeights(face_perceptual=FACE_PERCEPTUAL_ON), face=net)
    blurred = torch.from_numpy(np.stack([cv2.GaussianBlur(im, (0, 0), 2) for im in images.permute(0, 2, 3, 1).numpy()]))
    blurred = blurred.permute(0, 3, 1, 2).contiguous().requires_grad_(True)
    blurry = loss(blurred, images)
    assert loss(images.clone(), images)["face_perceptual"].item() == 0.0
    assert blurry["face_perceptual"].item() > 0.5  # measured 1.5 for sigma 2 with the default weights
    blurry["face_perceptual"].backward()
    assert blurred.grad is not None and blurred.grad.abs().sum() > 0
    off = ReconstructionLoss((1.0,), LossWeights(), face=net)(images.clone(), images)
    assert "face_perceptual" not in off


def test_face_perceptual_config_bounds():
    with pytest.raises(ConfigError, match="face_perceptual"):
        TrainConfig.from_dict({"loss": {"face_perceptual": [1, 1, 1, 1, 1]}})
    assert TrainConfig.from_dict({"loss": {"face_perceptual": [5, 5]}}).loss.face_perceptual == (5, 5)


def test_training_with_the_face_loss_logs_it_and_saves_no_extra_weights(tmp_path):
    from tests.test_training_trainer import make_synthetic_data, tiny_config
    from training.trainer import train

    data = make_synthetic_data(tmp_path / "data")
    config = tiny_config(max_steps=2, val_every=0, loss=LossWeights(face_perceptual=(5.0, 5.0)))
    summary = train(config, data, tmp_path / "run", device="cpu")
    assert summary["steps"] == 2
    assert ",train,face_perceptual," in (tmp_path / "run" / "metrics.csv").read_text()
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert not any("face" in key for part in ("kp_detector", "generator") for key in state[part])


def test_model_file_can_come_from_the_environment(tmp_path, monkeypatch):
    """A GPU machine without mediapipe carries the .tflite alone and names it in the environment."""
    from training.face_features import MODEL_PATH_VARIABLE, face_landmark_model_path

    bundled = face_landmark_model_path()
    copy = tmp_path / "face_landmark.tflite"
    copy.write_bytes(bundled.read_bytes())
    monkeypatch.setenv(MODEL_PATH_VARIABLE, str(copy))
    assert face_landmark_model_path() == copy
    assert len(FaceMeshFeatures().outputs) == 2  # the copy parses into the same graph
    monkeypatch.setenv(MODEL_PATH_VARIABLE, str(tmp_path / "missing.tflite"))
    with pytest.raises(FileNotFoundError, match=MODEL_PATH_VARIABLE):
        face_landmark_model_path()
