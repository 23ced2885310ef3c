"""Loss building blocks: SSIM, TPS warps and their jacobians, equivariance, VGG19 loading, teacher terms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.blocks import make_coordinate_grid
from training.config import LossWeights, TeacherConfig
from training.dataset import MIRROR, keypoint_targets, pixels_to_grid
from training.losses import RandomTPS, ReconstructionLoss, VGG19Features, equivariance_losses, ssim
from training.teacher import keypoint_landmark_loss, keypoint_weight, motion_loss


def test_ssim_and_reconstruction() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-5)
    assert ssim(x, torch.rand(2, 3, 32, 32)).item() < 0.2
    loss = ReconstructionLoss((1.0, 0.5, 0.25, 0.125), LossWeights())
    assert all(v.item() == pytest.approx(0.0, abs=1e-4) for v in loss(x, x).values())
    worse = loss(x, (x + 0.2).clamp(0, 1))
    assert set(worse) == {"l1", "ssim", "gradient"} and worse["l1"].item() > 0.5


def test_tps_jacobian_matches_autograd() -> None:
    torch.manual_seed(0)
    like = torch.zeros(1)
    tps = RandomTPS(3, 0.05, 0.05, 5, like, torch.Generator().manual_seed(1))
    pts = (torch.rand(3, 7, 2) * 2 - 1).requires_grad_(True)
    out = tps.warp(pts)
    rows = [torch.autograd.grad(out[..., i].sum(), pts, retain_graph=True)[0] for i in range(2)]
    numeric = torch.stack(rows, dim=-2)
    assert torch.allclose(tps.jacobian(pts.detach()), numeric, atol=1e-5)


def test_equivariance_zero_for_exact_keypoints() -> None:
    """If keypoints move exactly with the warp, both equivariance terms vanish."""
    tps = RandomTPS(2, 0.05, 0.01, 5, torch.zeros(1), torch.Generator().manual_seed(3))
    kp_t = {"value": torch.rand(2, 10, 2) * 1.2 - 0.6, "jacobian": torch.eye(2).repeat(2, 10, 1, 1)}
    kp_d = {"value": tps.warp(kp_t["value"]), "jacobian": tps.jacobian(kp_t["value"])}
    losses = equivariance_losses(kp_d, kp_t, tps, 10.0, 10.0)
    assert losses["equivariance_value"].item() < 1e-6 and losses["equivariance_jacobian"].item() < 1e-5
    kp_d["value"] = kp_d["value"] + 0.1
    assert equivariance_losses(kp_d, kp_t, tps, 10.0, 10.0)["equivariance_value"].item() > 0.9


def test_warp_image_follows_warp_coordinates() -> None:
    """image'(p) = image(T(p)): a blob at q in the image appears where T(p) = q."""
    tps = RandomTPS(1, 0.1, 0.0, 5, torch.zeros(1), torch.Generator().manual_seed(5))
    size = 65
    grid = make_coordinate_grid(size, size, torch.zeros(1))
    q = torch.tensor([0.2, -0.1])
    image = torch.exp(-((grid - q) ** 2).sum(-1) / 0.005)[None, None]
    warped = tps.warp_image(image)[0, 0]
    peak = grid.view(-1, 2)[warped.argmax()]
    assert torch.allclose(tps.warp(peak.view(1, 1, 2))[0, 0], q, atol=2.5 / size)


def test_vgg19_loads_torchvision_layout(tmp_path: Path) -> None:
    reference = VGG19Features()
    state = {f"features.{k}": v for k, v in reference.features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "vgg19.pth")
    vgg = VGG19Features.from_file(tmp_path / "vgg19.pth")
    assert max(int(k.split(".")[0]) for k in vgg.features.state_dict()) == 34
    feats = vgg(torch.rand(1, 3, 32, 32))
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]
    loss = ReconstructionLoss((1.0, 0.5), LossWeights(l1=0, ssim=0, gradient=0), vgg)
    x = torch.rand(1, 3, 32, 32)
    assert loss(x, x)["perceptual"].item() == 0.0
    from reenact_common.errors import CheckpointError

    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="torchvision VGG19"):
        VGG19Features.from_file(tmp_path / "bad.pth")


def test_motion_loss_zero_for_exact_flow_and_grows_when_wrong() -> None:
    """deformation(driving landmark) == source landmark <=> loss 0; shifted or ignored motion costs more."""
    torch.manual_seed(0)
    h = w = 33
    identity = make_coordinate_grid(h, w, torch.zeros(1)).unsqueeze(0).repeat(2, 1, 1, 1)
    shift = torch.tensor([0.1, -0.05])
    scale = 0.9
    deformation = identity * scale + shift  # source = 0.9 * driving + shift (an affine flow, exact under bilinear sampling)
    driving = torch.rand(2, 478, 2) * 1.6 - 0.8
    source = driving * scale + shift
    found = torch.tensor([True, True])
    assert motion_loss(deformation, driving, source, found).item() < 1e-5
    wrong = motion_loss(identity, driving, source, found).item()
    assert wrong > 0.1
    assert motion_loss(deformation, driving, source + 0.05, found).item() == pytest.approx(0.1, abs=1e-3)
    assert motion_loss(identity, driving, source, torch.tensor([False, False])).item() == 0.0


def test_keypoint_targets_and_flip_swap() -> None:
    cfg = TeacherConfig()
    landmarks = torch.rand(2, 478, 2) * 2 - 1
    targets = keypoint_targets(landmarks, cfg.landmark_indices, torch.tensor([False, True]))
    assert torch.equal(targets[0], landmarks[0, list(cfg.landmark_indices)])
    mirrored = [MIRROR.get(i, i) for i in cfg.landmark_indices]
    assert mirrored[:4] == [263, 33, 334, 105] and mirrored[4] == 1
    assert torch.equal(targets[1], landmarks[1, mirrored])
    found = torch.tensor([True, True])
    assert keypoint_landmark_loss(targets, targets, found).item() == 0.0
    assert keypoint_landmark_loss(targets + 0.1, targets, found).item() == pytest.approx(0.2, abs=1e-5)
    assert keypoint_landmark_loss(targets + 0.1, targets, torch.tensor([False, False])).item() == 0.0


def test_keypoint_weight_anneals() -> None:
    cfg = TeacherConfig(warmup_steps=10, keypoint_weight_start=10, keypoint_weight_end=1, keypoint_anneal_steps=90)
    assert keypoint_weight(cfg, 0) == 10 and keypoint_weight(cfg, 55) == pytest.approx(5.5)
    assert keypoint_weight(cfg, 1000) == 1
    assert keypoint_weight(TeacherConfig(enabled=False), 0) == 0


def test_pixel_to_grid_convention() -> None:
    """Continuous pixel centres (i + 0.5) land on the model's coordinate grid, at any target size."""
    grid = make_coordinate_grid(64, 64, torch.zeros(1)).numpy()
    centres = np.array([[0.5, 0.5], [63.5, 10.5]], dtype=np.float32) * 2  # at 128: same points, 2x
    mapped = pixels_to_grid(centres, 128, 64)
    assert np.allclose(mapped[0], grid[0, 0], atol=1e-6)
    assert np.allclose(mapped[1], grid[10, 63], atol=1e-6)
