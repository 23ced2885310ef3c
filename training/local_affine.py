"""Jacobian supervision from face-mesh landmarks: local affine fits of each keypoint's neighbourhood.

A keypoint's relative jacobian J_source @ inv(J_driving) is the local linear map the dense-motion network
uses around it (driving offsets -> source offsets). Where expression lives (lids, lips) that map is what
carries a blink or an opening mouth, so it is taught directly: for each keypoint, the 2x2 matrix that maps
its landmark's mesh neighbourhood in the driving frame onto the same points in the source frame (least
squares, translation removed) is the target. Neighbourhoods are chosen once, on a canonical mesh.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from models.blocks import inverse_2x2
from training.dataset import MIRROR, pixels_to_grid, scan_clips
from training.teacher import masked_mean

MESH_POINTS = 468  # the face mesh without the 10 iris points (irises follow gaze, not the skin)
MIN_DETERMINANT = 1e-10  # driving neighbourhoods flatter than this (squared [-1, 1] units) are not fitted


def canonical_mesh(root: str | Path, image_size: int) -> np.ndarray | None:
    """Median face mesh (478, 2) in [-1, 1] over the training clips' first found frames; None without landmarks.

    Why from the data: the crops are aligned faces, so the median shape is the typical face of this data
    set, and no extra file is needed."""
    shapes = []
    for clip in scan_clips(Path(root), "train"):
        if clip.landmarks is None or not clip.found.any():
            continue
        first = int(np.argmax(clip.found))
        shapes.append(pixels_to_grid(clip.landmarks[first], clip.landmark_size, image_size))
    return np.median(np.stack(shapes), axis=0).astype(np.float32) if shapes else None


def neighbourhoods(canonical: np.ndarray, anchors: Sequence[int], size: int) -> np.ndarray:
    """(K, size) mesh indices: the anchor landmark and its size - 1 nearest mesh points on the canonical mesh."""
    points = np.asarray(canonical, np.float64)[:MESH_POINTS]
    out = []
    for anchor in anchors:
        distance = np.linalg.norm(points - np.asarray(canonical, np.float64)[anchor], axis=1)
        if anchor < MESH_POINTS:
            distance[anchor] = -1.0  # the anchor first, even where another point lies on it
        nearest = [int(i) for i in np.argsort(distance, kind="stable")[:size]]
        if anchor not in nearest:
            nearest = [int(anchor)] + nearest[: size - 1]
        out.append(nearest)
    return np.asarray(out, np.int64)


def mirrored_neighbourhoods(canonical: np.ndarray, anchors: Sequence[int], size: int) -> np.ndarray:
    """Neighbourhoods of each anchor's mirror landmark (what keypoint k follows on a horizontally flipped sample)."""
    return neighbourhoods(canonical, [MIRROR.get(int(i), int(i)) for i in anchors], size)


def fit_local_affines(driving: torch.Tensor, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares A (..., 2, 2) with source - mean ~ A (driving - mean) over point sets (..., n, 2).

    Returns A and a mask of the fits that are well posed (the driving points not collinear). Solved in
    float64: the normal equations of ~10 points a few pixels apart are badly scaled in float32."""
    d = driving.double() - driving.double().mean(-2, keepdim=True)
    s = source.double() - source.double().mean(-2, keepdim=True)
    gram = d.transpose(-1, -2) @ d  # (..., 2, 2)
    cross = d.transpose(-1, -2) @ s
    valid = torch.linalg.det(gram) > MIN_DETERMINANT
    eye = torch.eye(2, dtype=gram.dtype, device=gram.device)
    safe = torch.where(valid[..., None, None], gram, eye)
    affine_t = torch.linalg.solve(safe, cross)  # A^T, since rows: s = d A^T
    return affine_t.transpose(-1, -2).to(driving.dtype), valid


def local_affine_targets(driving_landmarks: torch.Tensor, source_landmarks: torch.Tensor, plain: torch.Tensor,
                         mirrored: torch.Tensor, flipped: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K, 2, 2) fitted affines and (B, K) validity from (B, 478, 2) landmarks and (K, n) neighbourhoods."""
    b = driving_landmarks.shape[0]
    k, n = plain.shape
    index = torch.where(flipped.view(b, 1, 1), mirrored.view(1, k, n), plain.view(1, k, n)).reshape(b, k * n)
    gather = index.unsqueeze(-1).expand(b, k * n, 2)
    d = torch.gather(driving_landmarks, 1, gather).view(b, k, n, 2)
    s = torch.gather(source_landmarks, 1, gather).view(b, k, n, 2)
    return fit_local_affines(d, s)


def relative_jacobians(kp_source_jacobian: torch.Tensor, kp_driving_jacobian: torch.Tensor) -> torch.Tensor:
    """J_source @ inv(J_driving): the local map the dense-motion network uses around each keypoint."""
    return kp_source_jacobian @ inverse_2x2(kp_driving_jacobian)


def jacobian_landmark_loss(kp_source_jacobian: torch.Tensor, kp_driving_jacobian: torch.Tensor,
                           targets: torch.Tensor, valid: torch.Tensor, found: torch.Tensor) -> torch.Tensor:
    """Mean L1 (sum over the 4 entries) between the relative jacobians and the fitted affines (B, K, 2, 2)."""
    relative = relative_jacobians(kp_source_jacobian.float(), kp_driving_jacobian.float())
    err = (relative - targets.to(relative.dtype)).abs().sum(dim=(-1, -2))
    return masked_mean(err, valid & found.view(-1, 1))
