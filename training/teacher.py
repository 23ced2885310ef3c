"""mediapipe-landmark teacher: supervision used only while training, never at inference.

- keypoint term: pulls the K keypoints onto K chosen mesh landmarks (warm start, then an annealed weight so
  FOMM keeps the freedom to move keypoints where motion needs them);
- motion term: the dense flow must map each driving-frame landmark onto the same landmark in the source
  (the generator's `deformation` is a backward sampling grid: driving position -> source position).

Both are masked by the per-frame face-found flags, so data without landmarks turns them off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.config import TeacherConfig


def keypoint_weight(cfg: TeacherConfig, step: int) -> float:
    """Linear anneal from start to end weight over keypoint_anneal_steps after the warm start."""
    if not cfg.enabled:
        return 0.0
    t = (step - cfg.warmup_steps) / max(1, cfg.keypoint_anneal_steps)
    t = min(1.0, max(0.0, t))
    return cfg.keypoint_weight_start + t * (cfg.keypoint_weight_end - cfg.keypoint_weight_start)


def masked_mean(err: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of err (B, N) over mask (B, N); zero (with a graph) when nothing is valid."""
    mask = mask.to(err.dtype)
    return (err * mask).sum() / mask.sum().clamp(min=1.0)


def keypoint_landmark_loss(kp_value: torch.Tensor, targets: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
    """Mean L1 (in [-1, 1] units) between keypoints (B, K, 2) and their landmark targets, found frames only."""
    err = (kp_value - targets).abs().sum(-1)
    return masked_mean(err, found.view(-1, 1).expand_as(err))


def motion_loss(deformation: torch.Tensor, driving_landmarks: torch.Tensor, source_landmarks: torch.Tensor,
                found: torch.Tensor) -> torch.Tensor:
    """Mean L1 between deformation(driving landmark) and the source landmark; (B, h, w, 2) grid, (B, N, 2) points."""
    b, n, _ = driving_landmarks.shape
    field = deformation.permute(0, 3, 1, 2)
    sampled = F.grid_sample(field, driving_landmarks.view(b, 1, n, 2).to(field.dtype), mode="bilinear",
                            padding_mode="border", align_corners=True)
    sampled = sampled.view(b, 2, n).permute(0, 2, 1)
    err = (sampled - source_landmarks).abs().sum(-1)
    inside = (driving_landmarks.abs() <= 1).all(-1) & (source_landmarks.abs() <= 1).all(-1)
    return masked_mean(err, inside & found.view(-1, 1))
