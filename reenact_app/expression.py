"""Expression retargeting: the driver's mouth and eye openness carried over to any avatar.

Why: relative keypoint motion moves the avatar's head well, but the model's keypoints barely separate
when another person opens the mouth, and no keypoint sits on an eyelid, so blinks never reach the avatar
(measured with `reenact evaluate-cross`, docs/evaluation.md). Like LivePortrait's retargeting, the
driver's openness is measured on landmarks (mediapipe's face mesh, which the tracker runs every frame),
taken relative to the calibrated neutral frame, and imposed on the avatar:

- mouth: the avatar's lip keypoints (found once per avatar as the model keypoints nearest its inner-lip
  centre) are set apart by the driver's change in lip gap, in units of each face's inter-ocular distance;
  the generator draws the opened mouth, and the picture shows it too: lips parted, the jaw dropped,
  the dark inside drawn;
- eyes: an image-space lid warp on the model's output closes each eye by the driver's relative eye
  closure: the lash line comes down and the lid skin above it stretches to follow, as a lid does; an
  eye opened wide raises the lid instead;
- brows: an image-space lift moves each brow by the driver's change in brow height (no keypoint sits
  on a brow's motion alone: moving the model's brow keypoints moves the whole forehead).
  The avatar's mouth, lid and brow geometry comes from its face mesh at rest; each feature follows the
  head through a similarity fitted to the model keypoints around it (the lip keypoints excepted).

Everything here is numpy/OpenCV on keypoints and on the output image, so every engine gets it.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from reenact_common.errors import ConfigError

log = logging.getLogger(__name__)

# mediapipe face-mesh indices (468-point topology)
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
# per eye: outer corner, inner corner, upper lid centre, lower lid centre (image-left eye first)
EYES = ((33, 133, 159, 145), (362, 263, 386, 374))
# the inner lip line: corners, then the upper and lower lip from corner to corner
INNER_CORNERS = (78, 308)
CHIN, SUBNASALE = 152, 2
# per brow, its upper edge from the outer to the inner end (image-left brow first)
BROWS = ((70, 63, 105, 66, 107), (300, 293, 334, 296, 336))
# an opening mouth drops the jaw: its width at the chin (in mouth half-widths) and the neck below the
# chin over which the drop fades (in lower-lip-to-chin distances)
JAW_WIDTH, JAW_NECK = 1.8, 0.8
# the closing lid, in units of the eye's height: the lash line carried down whole (half-height), and
# the band of lid skin above it that stretches over the eye (the crease above it stays)
LID_MARGIN, LID_SKIN = 0.25, 0.4
LID_SKIN_TONE = 0.85  # how far a fully shut lid takes on the skin colour below the eye
LOWER_LID_RISE = 0.15  # where shut lids meet, as a share of the open eye's height above the lower lid


@dataclass
class ExpressionSettings:
    """User controls. `strength` scales the transferred openness (0: the model's motion alone)."""

    strength: float = 1.0
    mouth: bool = True
    eyes: bool = True
    brows: bool = True
    # kp-units of lip-keypoint separation per unit of visible lip gap: the generator opens the mouth
    # less than the keypoints part (chosen by the cross-identity mouth gain, docs/evaluation.md)
    mouth_gain: float = 1.6
    # the mouth opened in the picture too (lips parted, the inside drawn dark), in units of the
    # transferred lip gap; 0: keypoints alone (the generator draws what it can)
    mouth_image_gain: float = 1.0
    mouth_dead_zone: float = 0.02  # lip-gap changes below this (in inter-ocular distances) are noise
    eye_dead_zone: float = 0.06  # relative eye-aspect drops below this are noise (0.12 and 0: fewer blinks follow)
    # the face mesh's eye aspect at a full blink, relative to the open eye (measured cross-identity with
    # the lids below: 0.5 follows blinks better than 0.3 or 0.6, docs/evaluation.md)
    eye_closed_ratio: float = 0.5
    upper_lip_share: float = 0.3  # the jaw drops: the lower lip takes the larger part of the opening
    brow_dead_zone: float = 0.01  # brow-height changes below this (in inter-ocular distances) are noise
    eye_open_forget: float = 0.02  # per frame: how fast the remembered open-eye level follows the present
    # eyes opened wide (surprise, fear): the upper lid rises by the driver's widening beyond the dead zone,
    # at most this share of the eye's height (the picture above the eye has no more eye to show)
    eye_widen_limit: float = 0.3
    eye_usual_frames: int = 75  # widening is against the median eye opening of this many recent open frames

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 3.0:
            raise ConfigError(f"expression strength must be between 0 and 3, got {self.strength}")
        if not 0.0 <= self.eye_widen_limit < LID_MARGIN + LID_SKIN:
            raise ConfigError(f"eye_widen_limit must be at least 0 and below {LID_MARGIN + LID_SKIN}, "
                              f"got {self.eye_widen_limit}")
        if self.eye_usual_frames < 1:
            raise ConfigError(f"eye_usual_frames must be at least 1, got {self.eye_usual_frames}")

    @property
    def active(self) -> bool:
        return self.strength > 0 and (self.mouth or self.eyes or self.brows)


@dataclass(frozen=True)
class Openness:
    """How open a face's mouth and eyes are, scale-free."""

    mouth: float  # inner-lip gap / inter-ocular distance
    eyes: tuple[float, float]  # eye aspect ratio, image-left eye first
    brows: tuple[float, float]  # brow height above its eye's corner line / inter-ocular distance

    @classmethod
    def of(cls, landmarks: np.ndarray) -> "Openness":
        lm = np.asarray(landmarks, np.float64)
        iod = inter_ocular_distance(lm)
        mouth = float(np.linalg.norm(lm[UPPER_INNER_LIP] - lm[LOWER_INNER_LIP]) / iod)
        eyes = tuple(float(np.linalg.norm(lm[up] - lm[low]) / max(np.linalg.norm(lm[a] - lm[b]), 1e-6))
                     for a, b, up, low in EYES)
        brows = tuple(float(np.linalg.norm(lm[list(brow)].mean(0) - lm[[a, b]].mean(0)) / iod)
                      for brow, (a, b, _, _) in zip(BROWS, EYES))
        return cls(mouth, eyes, brows)  # type: ignore[arg-type]


def inter_ocular_distance(landmarks: np.ndarray) -> float:
    centres = [landmarks[[a, b]].mean(0) for a, b, _, _ in EYES]
    return max(float(np.linalg.norm(centres[1] - centres[0])), 1e-6)


@dataclass(frozen=True)
class EyeShape:
    """One avatar eye at rest, in crop pixels: a local frame whose x runs corner to corner and whose
    y points up (towards the brow)."""

    centre: np.ndarray  # (2,)
    x_axis: np.ndarray  # unit (2,)
    y_axis: np.ndarray  # unit (2,), "up" on the face
    half_width: float
    upper: float  # upper lid centre's height above the corner line (> 0)
    lower: float  # lower lid centre's height (< 0)


@dataclass(frozen=True)
class BrowShape:
    """One avatar brow at rest, in crop pixels."""

    centre: np.ndarray  # (2,)
    x_axis: np.ndarray  # unit (2,), along the brow
    y_axis: np.ndarray  # unit (2,), "up" on the face
    half_width: float
    reach: float  # how far above the brow the lift fades out (pixels)
    above_eye: float  # the brow's height above its eye's upper lid (pixels): below the brow the lift
    # fades out by there, so the skin between stretches and the eye stays


@dataclass(frozen=True)
class MouthShape:
    """The avatar's mouth at rest, in crop pixels, in a local frame like EyeShape's (x corner to corner,
    y up), with how far the lower face (to the chin) and the upper lip (to the nose) stretch."""

    centre: np.ndarray
    x_axis: np.ndarray
    y_axis: np.ndarray
    half_width: float
    upper: float  # inner upper lip centre's height (>= ~0)
    lower: float  # inner lower lip centre's height (<= ~0)
    chin: float  # < 0
    nose: float  # > 0
    interior: tuple[float, float, float]  # RGB of the mouth's inside: the lips' colour, darkened (x 0.3)


@dataclass(frozen=True)
class AvatarFace:
    """What retargeting needs of one avatar, measured once."""

    size: int
    openness: Openness
    iod_px: float
    down: np.ndarray  # unit vector, face "down" in crop pixels
    upper_lip: int | None  # model keypoint indices
    lower_lip: int | None
    lip_separation: float  # lower minus upper lip keypoint along `down`, keypoint units, at rest
    # per feature, how much each model keypoint carries it (near keypoints most, the retargeted lip
    # keypoints not at all): mouth, eyes, brows
    placement: tuple[np.ndarray, tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    eyes: tuple[EyeShape, EyeShape]
    brows: tuple[BrowShape, BrowShape]
    mouth: MouthShape

    @classmethod
    def measure(cls, landmarks: np.ndarray, keypoints: np.ndarray, size: int,
                image: np.ndarray | None = None) -> "AvatarFace":
        lm = np.asarray(landmarks, np.float64)
        kp_px = (np.asarray(keypoints, np.float64) + 1.0) * size / 2.0
        left, right = (lm[[a, b]].mean(0) for a, b, _, _ in EYES)
        across = (right - left) / max(np.linalg.norm(right - left), 1e-6)
        down = np.array([-across[1], across[0]])  # image y grows downwards
        iod = inter_ocular_distance(lm)
        mouth_centre = (lm[UPPER_INNER_LIP] + lm[LOWER_INNER_LIP]) / 2.0
        dist = np.linalg.norm(kp_px - mouth_centre, axis=1)
        near = [int(i) for i in np.argsort(dist)[:2] if dist[i] < 0.35 * iod]
        upper = lower = None
        if len(near) == 2:
            upper, lower = sorted(near, key=lambda i: float(kp_px[i] @ down))
        elif len(near) == 1:
            lower = near[0]
        kp_down = np.asarray(keypoints, np.float64) @ down
        separation = float(kp_down[lower] - kp_down[upper]) if upper is not None else 0.0
        eyes = tuple(_eye_shape(lm, idx, -down) for idx in EYES)
        brows = tuple(_brow_shape(lm, idx, -down, iod, eye) for idx, eye in zip(BROWS, eyes))
        mouth = _mouth_shape(lm, -down, image)
        lips = [i for i in (upper, lower) if i is not None]
        weights = lambda centre: _placement_weights(kp_px, centre, iod, lips)  # noqa: E731
        placement = (weights(mouth.centre), tuple(weights(e.centre) for e in eyes),
                     tuple(weights(b.centre) for b in brows))
        return cls(size, Openness.of(lm), iod, down, upper, lower, separation, placement, eyes,  # type: ignore[arg-type]
                   brows, mouth)  # type: ignore[arg-type]


def _placement_weights(kp_px: np.ndarray, centre: np.ndarray, iod: float, exclude: list[int]) -> np.ndarray:
    """How much each keypoint's motion carries a feature at `centre`: a Gaussian of the distance (sigma
    half an inter-ocular distance), so a feature goes where the keypoints around it went. One similarity
    for the whole face put the mouth on the cheek once the model bent a turned head (the generator moves
    each part with its own keypoints). A small floor lets every other keypoint steady the fit's rotation
    and scale."""
    dist = np.linalg.norm(kp_px - centre, axis=1)
    weights = np.exp(-0.5 * (dist / (0.5 * iod)) ** 2) + 0.02
    weights[exclude] = 0.0
    return weights / weights.sum()


def _local_axes(a: np.ndarray, b: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A feature's frame: x runs from point a to point b, y is perpendicular to it and points `up` the face."""
    x_axis = (b - a) / max(np.linalg.norm(b - a), 1e-6)
    y_axis = np.array([x_axis[1], -x_axis[0]])
    return x_axis, (y_axis if y_axis @ up >= 0 else -y_axis)


def _mouth_shape(lm: np.ndarray, up: np.ndarray, image: np.ndarray | None) -> MouthShape:
    a, b = lm[INNER_CORNERS[0]], lm[INNER_CORNERS[1]]
    centre = (a + b) / 2.0
    x_axis, y_axis = _local_axes(a, b, up)
    height = lambda i: float((lm[i] - centre) @ y_axis)  # noqa: E731
    interior = (40.0, 18.0, 18.0)
    if image is not None:  # the lips' own colour, darkened: a painting's mouth stays a painting's
        lips = np.round(lm[[0, 17, 13, 14, 61, 291]]).astype(int)
        h, w = image.shape[:2]
        lips = lips[(lips[:, 0] >= 0) & (lips[:, 0] < w) & (lips[:, 1] >= 0) & (lips[:, 1] < h)]
        if len(lips):
            interior = tuple(float(c) * 0.3 for c in np.median(image[lips[:, 1], lips[:, 0]].astype(float), 0))
    return MouthShape(centre, x_axis, y_axis, float(np.linalg.norm(b - a) / 2.0), max(height(UPPER_INNER_LIP), 0.0),
                      min(height(LOWER_INNER_LIP), 0.0), min(height(CHIN), -1.0), max(height(SUBNASALE), 1.0),
                      interior)  # type: ignore[arg-type]


def _brow_shape(lm: np.ndarray, idx: tuple[int, ...], up: np.ndarray, iod: float, eye: EyeShape) -> BrowShape:
    points = lm[list(idx)]
    x_axis, y_axis = _local_axes(points[0], points[-1], up)
    centre = points.mean(0)
    above_eye = float((centre - (eye.centre + eye.upper * eye.y_axis)) @ y_axis)
    return BrowShape(centre, x_axis, y_axis, float(np.linalg.norm(points[-1] - points[0]) / 2.0),
                     0.3 * iod, max(above_eye, 0.1 * iod))


def _eye_shape(lm: np.ndarray, idx: tuple[int, int, int, int], up: np.ndarray) -> EyeShape:
    a, b, top, bottom = (lm[i] for i in idx)
    centre = (a + b) / 2.0
    x_axis, y_axis = _local_axes(a, b, up)
    return EyeShape(centre, x_axis, y_axis, float(np.linalg.norm(b - a) / 2.0),
                    float(max((top - centre) @ y_axis, 0.5)), float(min((bottom - centre) @ y_axis, -0.5)))


def fit_similarity(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Least-squares 2x3 similarity (rotation, uniform scale, shift) taking src points to dst points,
    each point's error weighted by `weights` (default: all alike)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / max(float(w.sum()), 1e-12)
    ms, md = w @ src, w @ dst
    s, d = src - ms, dst - md
    denom = max(float(w @ (s ** 2).sum(1)), 1e-12)
    a = float(w @ (s * d).sum(1)) / denom
    b = float(w @ (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0])) / denom
    rot = np.array([[a, -b], [b, a]])
    return np.concatenate([rot, (md - rot @ ms)[:, None]], 1)


@dataclass
class _Patch:
    """A feature's local frame as seen in the output picture: the pixels of its bounding box and, for
    each, its coordinates along the feature (u) and up the face (v), in output pixels."""

    scale: float  # output pixels per avatar-crop pixel
    y_axis: np.ndarray  # unit "up" in output pixels
    box: tuple[int, int, int, int]  # x0, y0, x1, y1
    gx: np.ndarray
    gy: np.ndarray
    u: np.ndarray
    v: np.ndarray

    @classmethod
    def around(cls, image: np.ndarray, to_image: np.ndarray, centre: np.ndarray, x_axis: np.ndarray,
               y_axis: np.ndarray, along: float, across: float) -> "_Patch | None":
        """`along` / `across`: half-extents in avatar-crop pixels; None when it falls outside the picture."""
        scale = float(np.hypot(to_image[0, 0], to_image[1, 0]))
        if not (np.isfinite(to_image).all() and scale > 1e-3):  # keypoints collapsed onto one point
            return None
        c = to_image[:, :2] @ centre + to_image[:, 2]
        xa = to_image[:, :2] @ x_axis / scale
        ya = to_image[:, :2] @ y_axis / scale
        reach = np.abs(np.array([[xa[0], ya[0]], [xa[1], ya[1]]])) @ np.array([along, across]) * scale
        h, w = image.shape[:2]
        x0, x1 = int(max(c[0] - reach[0] - 2, 0)), int(min(c[0] + reach[0] + 3, w))
        y0, y1 = int(max(c[1] - reach[1] - 2, 0)), int(min(c[1] + reach[1] + 3, h))
        if x1 <= x0 or y1 <= y0:
            return None
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
        rx, ry = gx - c[0], gy - c[1]
        return cls(scale, ya, (x0, y0, x1, y1), gx, gy, rx * xa[0] + ry * xa[1], rx * ya[0] + ry * ya[1])

    def sample_shifted(self, image: np.ndarray, dv: np.ndarray) -> np.ndarray:
        """The patch where each pixel shows the picture `dv` output pixels up the face from it."""
        map_x = (self.gx + dv * self.y_axis[0]).astype(np.float32)
        map_y = (self.gy + dv * self.y_axis[1]).astype(np.float32)
        return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def pasted(self, image: np.ndarray, region: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.box
        out = image.copy()
        out[y0:y1, x0:x1] = region
        return out


def _eye_patch(image: np.ndarray, eye: EyeShape, to_image: np.ndarray) -> "_Patch | None":
    """The eye and its lid up to the crease (an eye's height above the upper lid), as `image` shows it."""
    height = eye.upper - eye.lower
    return _Patch.around(image, to_image, eye.centre, eye.x_axis, eye.y_axis, eye.half_width, eye.upper + height)


def _stretch(v: np.ndarray, at: np.ndarray, new: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Where each v between `new` and `fixed` samples the picture: the stretch of skin that ran from `at`
    to `fixed` and now runs from `new` to `fixed` (a lid margin moved, the crease or the corner held)."""
    span = fixed - new
    return at + (v - new) * (fixed - at) / np.where(np.abs(span) > 1e-3, span, 1e-3)


def _shifted_lids(image: np.ndarray, patch: "_Patch", source: np.ndarray, profile: np.ndarray) -> np.ndarray:
    """The patch with each pixel showing the picture at `source` (up the face), inside the eye's span;
    the displacement slightly blurred, so a lash line is drawn smooth, not stepped at the pixel grid."""
    dv = cv2.GaussianBlur(np.where(profile > 0, source - patch.v, 0.0).astype(np.float32), (0, 0), 0.7)
    return patch.sample_shifted(image, dv)


def close_eye(image: np.ndarray, eye: EyeShape, closure: float, to_image: np.ndarray) -> np.ndarray:
    """Close `eye` by `closure` (0 open as at rest, 1 shut), in place of a copy.

    `to_image` maps the avatar crop's pixels to `image`'s (a 2x3 similarity). As real lids do: the upper
    lid's margin (its lash line) travels down, the lower lid rises a little to meet it, and the band of
    lid skin beyond each margin stretches to follow; the crease and brow above stay where they are, and
    the newly covered lid takes on the skin's colour (a shut lid catches the light). Stretching the whole
    lid and crease over the eye instead draws a second, eye-like dark line across a shut eye, which dlib
    still reads as open. The warp is the identity at the corners."""
    patch = _eye_patch(image, eye, to_image)
    if closure <= 0.0 or patch is None:
        return image
    k, v, c = patch.scale, patch.v, min(closure, 1.0)
    w, up, low, h = eye.half_width * k, eye.upper * k, eye.lower * k, (eye.upper - eye.lower) * k
    margin = max(LID_MARGIN * h, 1.0)  # half-height of a lash line carried whole
    band = LID_SKIN * h  # lid skin beyond each margin that stretches over the eye
    profile = np.clip(1.0 - (patch.u / w) ** 2, 0.0, 1.0)
    lid, lower_lid = up * profile, low * profile
    meet = lower_lid + LOWER_LID_RISE * (lid - lower_lid)
    drop = c * (lid - meet + (0.05 * h + 0.5) * profile)  # a shut upper lid tucks just past the lower one
    rise = c * (meet - lower_lid)
    new_lid, new_lower = lid - drop, lower_lid + rise
    top, bottom = lid + margin + band, lower_lid - margin - band
    on_margin = (v >= new_lid - margin) & (v <= new_lid + margin)
    on_lid = (v > new_lid + margin) & (v < top)
    on_lower_margin = (v >= new_lower - margin) & (v <= new_lower + margin)
    on_lower_lid = (v < new_lower - margin) & (v > bottom)
    source = np.select(
        [on_margin, on_lid, on_lower_margin, on_lower_lid],
        [v + drop, _stretch(v, lid + margin, new_lid + margin, top), v - rise,
         _stretch(v, lower_lid - margin, new_lower - margin, bottom)], v)
    region = _shifted_lids(image, patch, source, profile).astype(np.float32)
    x0, y0, x1, y1 = patch.box
    cheek = (np.abs(patch.u) < 0.5 * w) & (v < low - 0.5 * h) & (v > low - 1.0 * h)
    if cheek.any():
        skin = np.median(image[y0:y1, x0:x1][cheek].astype(np.float32), 0)
        fade = np.clip((top - v) / np.maximum(top - lid - margin, 1e-3), 0.0, 1.0)
        weight = LID_SKIN_TONE * c * np.where(on_lid & (profile > 0), fade, 0.0)[..., None]
        region = region * (1.0 - weight) + skin * weight
    return patch.pasted(image, np.clip(region + 0.5, 0, 255).astype(image.dtype))


def widen_eye(image: np.ndarray, eye: EyeShape, rise: float, to_image: np.ndarray) -> np.ndarray:
    """Open `eye` wider: its upper lid rises by `rise` eye heights (below LID_MARGIN + LID_SKIN), the
    opening below stretching to follow and the lid skin above folding up under the crease, which stays
    (the mirror of `close_eye`'s lid); the lower lid and the corners stay."""
    patch = _eye_patch(image, eye, to_image)
    if rise <= 0.0 or patch is None:
        return image
    k, v = patch.scale, patch.v
    h = (eye.upper - eye.lower) * k
    profile = np.clip(1.0 - (patch.u / (eye.half_width * k)) ** 2, 0.0, 1.0)
    lid, lower = eye.upper * k * profile, eye.lower * k * profile
    new_lid = lid + min(rise, LID_MARGIN + LID_SKIN - 0.05) * h * profile
    top = lid + (LID_MARGIN + LID_SKIN) * h
    # each pixel shows the picture at `source`: the opening [lower, lid] drawn over [lower, new_lid], the
    # lid skin [lid, top] over [new_lid, top]
    source = np.where((v > lower) & (v <= new_lid), _stretch(v, lid, new_lid, lower),
                      np.where((v > new_lid) & (v < top), _stretch(v, lid, new_lid, top), v))
    return patch.pasted(image, _shifted_lids(image, patch, source, profile))


def lift_brow(image: np.ndarray, brow: BrowShape, lift: float, to_image: np.ndarray) -> np.ndarray:
    """Move `brow` up by `lift` avatar-crop pixels (down when negative): a smooth bump of displacement,
    full along the brow, fading over `brow.reach` above it and past its ends, and below it by the upper
    lid, so the lid skin between stretches (or folds) and the eye stays, as with a raised brow. (A bump
    that also faded over `reach` below moved the eye half as far as the brow: dlib then read a brow
    change of a third of the lift, and an eye opening with it.)"""
    lift = float(np.clip(lift, -0.6 * brow.above_eye, 0.6 * brow.above_eye))  # no fold below the brow
    sx, sy = 1.6 * brow.half_width, brow.reach
    # the bump is below 2 % past 2 sx along the brow and 2 sy above it, and ends at the lid below it
    along, across = 2.0 * sx + abs(lift), max(2.0 * sy, brow.above_eye) + abs(lift)
    patch = _Patch.around(image, to_image, brow.centre, brow.x_axis, brow.y_axis, along, across)
    if lift == 0.0 or patch is None:
        return image
    k, v = patch.scale, patch.v
    t = np.clip(-v / (brow.above_eye * k), 0.0, 1.0)
    vertical = np.where(v >= 0, np.exp(-(v / (sy * k)) ** 2), (1.0 - t ** 2) ** 2)
    bump = np.exp(-(patch.u / (sx * k)) ** 2) * vertical
    # each output pixel samples the picture `lift` below it (scaled by the bump): content moves up
    return patch.pasted(image, patch.sample_shifted(image, -lift * patch.scale * bump))


def open_mouth(image: np.ndarray, mouth: MouthShape, gap: float, to_image: np.ndarray,
               upper_share: float = 0.3) -> np.ndarray:
    """Part the avatar's lips by `gap` avatar-crop pixels at their centre: the lower lip and jaw move
    down (stretching towards the chin), the upper lip up (towards the nose), each along a lens that is
    zero at the corners, and the opening between them shows the mouth's dark inside."""
    neck = JAW_NECK * (mouth.lower - mouth.chin)  # below the chin, over which the jaw's drop fades out
    patch = _Patch.around(image, to_image, mouth.centre, mouth.x_axis, mouth.y_axis, JAW_WIDTH * mouth.half_width,
                          max(mouth.nose, neck - mouth.chin + 2.0 * gap))
    if gap <= 0.0 or patch is None:
        return image
    k, u, v = patch.scale, patch.u, patch.v
    w = 1.1 * mouth.half_width * k
    upper, lower, chin, nose, neck = (x * k for x in (mouth.upper, mouth.lower, mouth.chin, mouth.nose, neck))
    d_up, d_low = upper_share * gap * k, (1.0 - upper_share) * gap * k
    lens = np.clip(1.0 - (u / w) ** 2, 0.0, 1.0)
    new_upper = (upper + d_up) * lens
    new_lower = (lower - d_low) * lens
    # the jaw drops whole: lower lip and chin move down together, the jaw widening from the mouth's lens
    # at the lip to JAW_WIDTH at the chin, and the drop fades out over the neck below the dropped chin
    depth = np.clip((lower - v) / max(lower - chin, 1e-3), 0.0, 1.0)
    jaw_w = w * (1.0 + (JAW_WIDTH / 1.1 - 1.0) * depth)
    jaw = np.clip(1.0 - (u / jaw_w) ** 2, 0.0, 1.0) * np.clip(1.0 - (chin - d_low - v) / max(neck, 1e-3), 0.0, 1.0)
    fall_up = np.clip((nose - v) / np.maximum(nose - new_upper, 1e-3), 0.0, 1.0)
    dv = np.where(v <= new_lower, d_low * jaw, 0.0) - np.where(v >= new_upper, d_up * lens * fall_up, 0.0)
    region = patch.sample_shifted(image, dv).astype(np.float32)
    # inside: upper teeth under the upper lip once the mouth is open enough, then the dark mouth (the
    # lips' colour, darkened), antialiased at the lips
    opening = np.maximum(new_upper - new_lower, 1e-3)
    t = np.clip((new_upper - v) / opening, 0.0, 1.0)[..., None]  # 0 at the upper lip, 1 at the lower
    lips = np.asarray(mouth.interior, np.float32) / 0.3
    dark = lips * (0.35 - 0.15 * np.clip(1.0 - np.abs(t - 0.6) / 0.4, 0.0, 1.0))
    teeth = 0.7 * np.float32(215.0) + 0.3 * lips
    show_teeth = np.clip((opening[..., None] - 3.0 * k) / (3.0 * k), 0.0, 1.0)
    band = np.clip((0.32 - t) / 0.08, 0.0, 1.0) * show_teeth
    colour = teeth * band + dark * (1.0 - band)
    inside = np.clip(np.minimum(v - new_lower, new_upper - v) / 1.5, 0.0, 1.0)[..., None]
    region = region * (1.0 - inside) + colour * inside
    return patch.pasted(image, np.clip(region + 0.5, 0, 255).astype(image.dtype))


def _beyond_dead_zone(delta: float, dead_zone: float) -> float:
    """`delta` shrunk towards 0 by `dead_zone` (0 inside it): changes within landmark noise move nothing."""
    return float(np.sign(delta) * max(abs(delta) - dead_zone, 0.0))


class ExpressionRetargeter:
    """Per-session state: the avatar's face at rest and the driver's neutral openness."""

    def __init__(self, settings: ExpressionSettings | None = None):
        self.settings = settings or ExpressionSettings()
        self.avatar: AvatarFace | None = None
        self.reference: Openness | None = None
        self._closure = (0.0, 0.0)
        self._lift = (0.0, 0.0)  # avatar-crop pixels, per brow
        self._mouth_gap = 0.0  # this frame's lip parting drawn in the picture, avatar-crop pixels
        self._rest_mouth = 0.0  # the driver's adapted baseline (see _update_baseline)
        self._open_eyes = (0.0, 0.0)
        self._recent_eyes: deque[tuple[float, float]] = deque()  # for widening (see _update_baseline)

    def set_avatar(self, landmarks: np.ndarray | None, keypoints: np.ndarray, size: int,
                   image: np.ndarray | None = None) -> None:
        self.avatar = None if landmarks is None else AvatarFace.measure(landmarks, keypoints, size, image)
        if landmarks is None:
            log.info("no face mesh on the avatar: expression retargeting is off for it")

    def set_reference(self, landmarks: np.ndarray | None) -> None:
        self.reference = None if landmarks is None else Openness.of(landmarks)
        if self.reference is not None:
            self._rest_mouth = self.reference.mouth
            self._open_eyes = self.reference.eyes
            self._recent_eyes = deque([self.reference.eyes], maxlen=self.settings.eye_usual_frames)

    def _update_baseline(self, now: Openness) -> None:
        """The driver's rest, adapted: calibration often catches a mouth mid-word or eyes mid-blink (and
        a live user talks while pressing C), so the mouth's rest is the most closed it has been since
        calibration, and the eyes' open level the widest recent one (a slowly forgetting maximum, so one
        surprised stare does not make every later frame look half shut)."""
        cfg = self.settings
        self._rest_mouth = min(self._rest_mouth, now.mouth)
        self._open_eyes = tuple(
            max(n, r, (1.0 - cfg.eye_open_forget) * o + cfg.eye_open_forget * n)
            for n, r, o in zip(now.eyes, self.reference.eyes, self._open_eyes))

    def ready(self) -> bool:
        return self.settings.active and self.avatar is not None and self.reference is not None

    def adjust_keypoints(self, value: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
        """Driving keypoint positions (K, 2, in [-1, 1]) with the lip keypoints set apart by the driver's
        change in lip gap; also remembers this frame's eye closure for `finish`."""
        self._closure = self._lift = (0.0, 0.0)
        self._mouth_gap = 0.0
        if not self.ready() or landmarks is None:
            return value
        cfg, av = self.settings, self.avatar
        now = Openness.of(landmarks)
        self._update_baseline(now)
        if cfg.eyes:  # > 0: lowered lids; < 0: lids raised (eyes opened wide)
            closure = [self._eye_closure(n, o) for n, o in zip(now.eyes, self._open_eyes)]
            usual = self._usual_eyes(now, blinking=any(closure))
            self._closure = tuple(c or -self._eye_widening(n, u) for c, n, u in zip(closure, now.eyes, usual))
        if cfg.brows:
            self._lift = tuple(self._brow_lift(n, r) for n, r in zip(now.brows, self.reference.brows))
        if not cfg.mouth:
            return value
        delta = _beyond_dead_zone(now.mouth - self._rest_mouth, cfg.mouth_dead_zone)
        gap = max(av.openness.mouth + cfg.strength * delta, 0.0) - av.openness.mouth  # in IODs
        if cfg.mouth_image_gain > 0:
            self._mouth_gap = cfg.mouth_image_gain * gap * av.iod_px  # avatar-crop pixels, for `finish`
        if cfg.mouth_gain <= 0 or av.lower_lip is None:
            return value
        shift = cfg.mouth_gain * gap * av.iod_px * 2.0 / av.size  # in keypoint units
        value = value.copy()
        if av.upper_lip is None:
            value[av.lower_lip] = value[av.lower_lip] + shift * av.down
            return value
        # the head motion stays; the lips' separation along the face follows the driver's lip gap
        # instead of the driver's lip keypoints, which barely part for another face
        current = float((value[av.lower_lip] - value[av.upper_lip]) @ av.down)
        extra = av.lip_separation + shift - current
        value[av.upper_lip] = value[av.upper_lip] - cfg.upper_lip_share * extra * av.down
        value[av.lower_lip] = value[av.lower_lip] + (1.0 - cfg.upper_lip_share) * extra * av.down
        return value

    def _brow_lift(self, now: float, reference: float) -> float:
        cfg = self.settings
        return float(cfg.strength * _beyond_dead_zone(now - reference, cfg.brow_dead_zone) * self.avatar.iod_px)

    def _eye_closure(self, now: float, reference: float) -> float:
        cfg = self.settings
        drop = 1.0 - now / max(reference, 1e-6)
        full = 1.0 - cfg.eye_closed_ratio
        return float(np.clip((drop - cfg.eye_dead_zone) / (full - cfg.eye_dead_zone), 0.0, 1.0) * cfg.strength)

    def _usual_eyes(self, now: Openness, blinking: bool) -> np.ndarray:
        """The eyes' usual opening, which widening is measured against: the upper median of the
        calibration's and the last few seconds' frames that were no blink, so a calibration caught
        mid-blink is outvoted by the first open frame, and a stare held for seconds becomes the usual and
        fades."""
        if not blinking:
            self._recent_eyes.append(now.eyes)
        return np.sort(np.asarray(self._recent_eyes), axis=0)[len(self._recent_eyes) // 2]

    def _eye_widening(self, now: float, usual: float) -> float:
        """How far the upper lid rises, in eye heights: the driver's eye aspect over its usual one."""
        cfg = self.settings
        rise = now / max(usual, 1e-6) - 1.0
        return float(min(max(rise - cfg.eye_dead_zone, 0.0) * cfg.strength, cfg.eye_widen_limit))

    def finish(self, image: np.ndarray, source_keypoints: np.ndarray, driving_keypoints: np.ndarray,
               crop_to_image: np.ndarray | None = None) -> np.ndarray:
        """The output with this frame's picture work applied (mouth opened, brows lifted, lids lowered).
        `image` is the model's crop (default) or any picture the crop was composed into: `crop_to_image`
        (2x3) maps model-crop pixels to its pixels (the full-resolution portrait, the paste-back)."""
        if not self.ready() or (not any(self._closure) and not any(self._lift) and self._mouth_gap <= 0.0):
            return image
        av = self.avatar
        src = (source_keypoints + 1.0) * av.size / 2.0
        dst = (driving_keypoints + 1.0) * av.size / 2.0
        if crop_to_image is None:
            crop_to_image = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]) * (image.shape[0] / av.size)
        crop_to_image = np.asarray(crop_to_image, np.float64)

        def to_image(weights: np.ndarray) -> np.ndarray:
            """Each feature where the model moved it: a similarity fitted to the keypoints around it."""
            return crop_to_image @ np.concatenate([fit_similarity(src, dst, weights), [[0.0, 0.0, 1.0]]])

        mouth_weights, eye_weights, brow_weights = av.placement
        if self._mouth_gap > 0.0:
            image = open_mouth(image, av.mouth, self._mouth_gap, to_image(mouth_weights), self.settings.upper_lip_share)
        for brow, lift, weights in zip(av.brows, self._lift, brow_weights):
            if lift:
                image = lift_brow(image, brow, lift, to_image(weights))
        for eye, closure, weights in zip(av.eyes, self._closure, eye_weights):
            if closure > 0.0:
                image = close_eye(image, eye, min(closure, 1.0), to_image(weights))
            elif closure < 0.0:
                image = widen_eye(image, eye, -closure, to_image(weights))
        return image
