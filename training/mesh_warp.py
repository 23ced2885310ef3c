"""The classical reference of the cross-identity evaluation: a piecewise-affine mesh warp of the avatar.

The avatar's 68 dlib landmarks plus points on the image border are triangulated once (Delaunay); each frame
the landmarks move by the driver's landmark motion since its first frame, scaled by the inter-ocular
distance ratio (avatar / driver), the border stays put, and every output pixel takes its colour from the
matching point of its triangle in the avatar (one vectorised remap, not a loop of per-triangle warps).
It moves lids and lips exactly but cannot draw what the avatar does not show (an open mouth's interior):
a learned generator should beat it on every feature.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.expression_metrics import INNER_LIP_PAIRS, LEFT_EYE, RIGHT_EYE, inter_ocular_distance

BORDER_POINTS_PER_SIDE = 3  # corners plus evenly spaced points on each edge keep the background still
# (upper, lower) points that meet when the mouth or an eye closes: inner lips, then both eyes' lids
CLOSING_PAIRS = (*INNER_LIP_PAIRS, (37, 41), (38, 40), (43, 47), (44, 46))


def border_points(size: int, per_side: int = BORDER_POINTS_PER_SIDE) -> np.ndarray:
    """Points on the border of a size x size image: corners and `per_side - 2` more per edge."""
    edge = np.linspace(0.0, size - 1.0, per_side)
    last = size - 1.0
    points = [(x, 0.0) for x in edge] + [(x, last) for x in edge]
    points += [(0.0, y) for y in edge[1:-1]] + [(last, y) for y in edge[1:-1]]
    return np.array(points, np.float64)


def _triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles (M, 3) of `points` (OpenCV's Subdiv2D), with a closed mouth's coinciding inner-lip
    points pulled apart first (topology only), so every landmark stays a vertex and the lips can part."""
    layout = points.copy()
    for upper, lower in INNER_LIP_PAIRS:
        if np.linalg.norm(layout[lower] - layout[upper]) < 1.0:
            layout[upper, 1] -= 0.5
            layout[lower, 1] += 0.5
    low, high = np.floor(layout.min(0)) - 2.0, np.ceil(layout.max(0)) + 2.0
    subdiv = cv2.Subdiv2D((int(low[0]), int(low[1]), int(high[0] - low[0]), int(high[1] - low[1])))
    for x, y in layout:
        subdiv.insert((float(x), float(y)))
    corners = subdiv.getTriangleList().reshape(-1, 3, 2).astype(np.float64)
    distance = np.linalg.norm(corners[:, :, None, :] - layout[None, None], axis=-1)  # (M, 3, N)
    ours = distance.min(axis=2).max(axis=1) < 0.01  # drop triangles on Subdiv2D's outer helper vertices
    return distance.argmin(axis=2)[ours].astype(np.int64)


@dataclass
class MeshWarp:
    """The avatar's mesh, built once per avatar; `warp` per driving frame."""

    avatar: np.ndarray  # uint8 RGB (H, W, 3)
    points: np.ndarray  # (68 + B, 2) avatar landmarks then border points
    triangles: np.ndarray  # (M, 3) vertex indices
    avatar_iod: float

    @classmethod
    def build(cls, avatar: np.ndarray, landmarks: np.ndarray) -> "MeshWarp":
        size = avatar.shape[0]
        if avatar.shape[:2] != (size, size):
            raise ValueError(f"the mesh warp expects a square avatar crop, got {avatar.shape[:2]}")
        points = np.concatenate([np.asarray(landmarks, np.float64), border_points(size)])
        return cls(avatar, points, _triangulate(points), inter_ocular_distance(landmarks))

    def target_points(self, driver_landmarks: np.ndarray, driver_reference: np.ndarray) -> np.ndarray:
        """Avatar landmarks moved by the driver's motion since its reference frame, scaled by IOD ratio."""
        scale = self.avatar_iod / max(inter_ocular_distance(driver_reference), 1e-6)
        moved = self.points.copy()
        moved[:68] += (np.asarray(driver_landmarks, np.float64) - np.asarray(driver_reference, np.float64)) * scale
        close_without_crossing(moved)
        return moved

    def warp(self, driver_landmarks: np.ndarray, driver_reference: np.ndarray) -> np.ndarray:
        """The avatar with its landmarks where the driver's motion puts them (uint8 RGB)."""
        return warp_piecewise_affine(self.avatar, self.points, self.target_points(driver_landmarks, driver_reference),
                                     self.triangles)


def close_without_crossing(points: np.ndarray) -> None:
    """A driver whose neutral frame is mid-word (mouth open) closes the mouth by more than a closed-mouth
    avatar can: the upper inner lip would pass below the lower one (likewise the lids in a blink from wide
    eyes), which draws an open, inverted mouth. Such a pair meets at its midpoint instead (in place)."""
    eye_line = points[LEFT_EYE].mean(0) - points[RIGHT_EYE].mean(0)
    down = np.array([-eye_line[1], eye_line[0]]) / max(float(np.linalg.norm(eye_line)), 1e-6)
    for upper, lower in CLOSING_PAIRS:
        if (points[lower] - points[upper]) @ down < 0:
            points[upper] = points[lower] = (points[upper] + points[lower]) / 2.0


def _target_to_source_affines(source: np.ndarray, target: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(M, 2, 3) affine maps taking each target triangle onto its source triangle (pseudo-inverse: a
    collapsed target triangle covers no area, so any finite map will do)."""
    t = target[triangles]  # (M, 3, 2)
    s = source[triangles]
    homogeneous = np.concatenate([t, np.ones((*t.shape[:2], 1))], axis=2)  # (M, 3, 3)
    return np.transpose(np.linalg.pinv(homogeneous) @ s, (0, 2, 1))  # (M, 2, 3)


def warp_piecewise_affine(image: np.ndarray, source: np.ndarray, target: np.ndarray,
                          triangles: np.ndarray) -> np.ndarray:
    """Move `image` so that its points `source` land on `target` (same triangulation), by backward mapping:
    each output pixel finds its target triangle and samples the image at the source triangle's
    corresponding point. Pixels no triangle covers keep their own position."""
    h, w = image.shape[:2]
    shift = 4  # fillConvexPoly's fractional bits: sub-pixel triangle edges
    labels = np.zeros((h, w), np.int32)  # 0: no triangle, else triangle index + 1
    corners = np.rint(target[triangles] * (1 << shift)).astype(np.int32)
    for index, triangle in enumerate(corners):
        cv2.fillConvexPoly(labels, triangle, index + 1, lineType=cv2.LINE_8, shift=shift)
    affines = np.concatenate([np.array([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]]),
                              _target_to_source_affines(source, target, triangles)])
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    a = affines[labels]  # (h, w, 2, 3)
    map_x = a[..., 0, 0] * xs + a[..., 0, 1] * ys + a[..., 0, 2]
    map_y = a[..., 1, 0] * xs + a[..., 1, 1] * ys + a[..., 1, 2]
    return cv2.remap(image, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
