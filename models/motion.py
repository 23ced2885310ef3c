"""Relative keypoint motion (FOMM demo): transfer the driver's motion since a reference frame onto the avatar."""

from __future__ import annotations

import numpy as np
import torch

from models.blocks import inverse_2x2

KP = dict[str, torch.Tensor]  # keypoints: {"value": (B, K, 2), "jacobian": (B, K, 2, 2)}, the one alias of models/


def convex_hull_area(points: np.ndarray) -> float:
    """Area of the 2-D convex hull of (N, 2) points (Andrew's monotone chain + shoelace)."""
    pts = sorted(map(tuple, np.asarray(points, dtype=np.float64)))
    if len(pts) < 3:
        return 0.0

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    hull = np.array(lower[:-1] + upper[:-1])
    x, y = hull[:, 0], hull[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def movement_scale(kp_source: KP, kp_driving_initial: KP) -> float:
    """sqrt(area(source hull) / area(initial driving hull)): computed once at calibration."""
    source_area = convex_hull_area(kp_source["value"][0].detach().cpu().numpy())
    driving_area = convex_hull_area(kp_driving_initial["value"][0].detach().cpu().numpy())
    if driving_area <= 0:
        return 1.0
    return float(np.sqrt(source_area) / np.sqrt(driving_area))


def normalize_kp(
    kp_source: KP,
    kp_driving: KP,
    kp_driving_initial: KP,
    adapt_movement_scale: bool | float = False,
    use_relative_movement: bool = False,
    use_relative_jacobian: bool = False,
) -> KP:
    """Driving keypoints expressed relative to the avatar, as in the FOMM demo.

    `adapt_movement_scale` may also be a precomputed float (from `movement_scale`) so live sessions
    compute the hull areas once at calibration instead of every frame.
    """
    if isinstance(adapt_movement_scale, bool):
        scale = movement_scale(kp_source, kp_driving_initial) if adapt_movement_scale else 1.0
    else:
        scale = float(adapt_movement_scale)
    kp_new = dict(kp_driving)
    if use_relative_movement:
        kp_new["value"] = (kp_driving["value"] - kp_driving_initial["value"]) * scale + kp_source["value"]
        if use_relative_jacobian and "jacobian" in kp_driving:
            jacobian_diff = torch.matmul(kp_driving["jacobian"], inverse_2x2(kp_driving_initial["jacobian"]))
            kp_new["jacobian"] = torch.matmul(jacobian_diff, kp_source["jacobian"])
    return kp_new
