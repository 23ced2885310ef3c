"""Cross-identity expression metrics: does the avatar do what the driver's face does?

Per frame, six scalar features from dlib's 68 landmarks (iBUG 300-W indices), on the driver and on the
output alike; per (driver clip, avatar) pair, how the output's series follows the driver's: Pearson r
(timing and direction) and gain = std(output) / std(driver) (amplitude). A feature is scored only where
the driver really moves it: its driver std must exceed that feature's landmark-noise threshold, else r
and gain would measure dlib's jitter.

Features (all scale-free, so avatar and driver of different face sizes compare):
- mouth: mean inner-lip gap (61-67, 62-66, 63-65) / inter-ocular distance (IOD, between eye centres);
- eyes: eye aspect ratio (lid gaps over eye width), mean of both eyes: drops to ~0.1 in a blink;
- brows: mean distance of each brow (17-21, 22-26) from its eye's centre / IOD;
- roll: angle of the eye line (radians);
- yaw: nose tip (30) offset from the eye midpoint along the eye line / jaw width (0-16);
- pitch: the same offset across the eye line / eye-midpoint-to-chin (8) distance.

Only dlib here (never mediapipe, the training teacher); the models load once via `training.metrics`.
Pure numpy apart from dlib: inference never imports this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from training.metrics import Box, FaceModels, embedding_distance

FEATURES = ("mouth", "eyes", "brows", "roll", "yaw", "pitch")
FEATURE_LABELS = {
    "mouth": "mouth opening",
    "eyes": "eye opening",
    "brows": "brow raise",
    "roll": "head roll",
    "yaw": "head yaw",
    "pitch": "head pitch",
}
# Driver std below which a feature counts as "not moved" (landmark noise). mouth, eyes, roll, yaw and pitch
# keep the thresholds of the first measurement. brows: from the noise floor `experiments/expression_noise.py`
# measures (one still frame of 14 prepared clips, 16 copies each moved by up to 2 px, 0.5 degrees and 1 %
# scale, saved as JPEG 70-95): the brow feature's std is 0.006 (median; 90th percentile 0.014); 0.015 is
# above the 90th percentile, as mouth's 0.03 is (its floor: 0.008, 0.028). Eyes have the thinnest margin
# (floor 0.017, 0.024 against 0.02): eye scores on small lid motion are partly noise.
NOISE_THRESHOLDS = {"mouth": 0.03, "eyes": 0.02, "brows": 0.015, "roll": 0.02, "yaw": 0.01, "pitch": 0.01}

RIGHT_EYE = slice(36, 42)  # the subject's right eye: image left in a frontal face
LEFT_EYE = slice(42, 48)
RIGHT_BROW = slice(17, 22)
LEFT_BROW = slice(22, 27)
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
NOSE_TIP, CHIN, JAW_RIGHT, JAW_LEFT = 30, 8, 0, 16


def eye_aspect_ratio(eye: np.ndarray) -> float:
    """(|p2-p6| + |p3-p5|) / (2 |p1-p4|) for one eye's six points (p1, p4 the corners)."""
    vertical = np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4])
    return float(vertical / (2.0 * max(np.linalg.norm(eye[0] - eye[3]), 1e-6)))


def expression_features(landmarks: np.ndarray) -> dict[str, float]:
    """The six features of one face from its (68, 2) dlib landmarks (pixels)."""
    points = np.asarray(landmarks, np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"expected (68, 2) dlib landmarks, got {points.shape}")
    right_eye, left_eye = points[RIGHT_EYE].mean(0), points[LEFT_EYE].mean(0)
    eye_line = left_eye - right_eye  # image left -> right in a frontal face
    iod = max(float(np.linalg.norm(eye_line)), 1e-6)
    along = eye_line / iod
    across = np.array([-along[1], along[0]])  # eye line turned +90 degrees: points down the face
    middle = (right_eye + left_eye) / 2.0
    nose = points[NOSE_TIP] - middle
    lip_gap = np.mean([np.linalg.norm(points[a] - points[b]) for a, b in INNER_LIP_PAIRS])
    brow_gap = (np.linalg.norm(points[RIGHT_BROW].mean(0) - right_eye)
                + np.linalg.norm(points[LEFT_BROW].mean(0) - left_eye)) / 2.0
    return {
        "mouth": float(lip_gap / iod),
        "eyes": (eye_aspect_ratio(points[RIGHT_EYE]) + eye_aspect_ratio(points[LEFT_EYE])) / 2.0,
        "brows": float(brow_gap / iod),
        "roll": math.atan2(eye_line[1], eye_line[0]),
        "yaw": float(nose @ along / max(np.linalg.norm(points[JAW_LEFT] - points[JAW_RIGHT]), 1e-6)),
        "pitch": float(nose @ across / max(np.linalg.norm(points[CHIN] - middle), 1e-6)),
    }


def inter_ocular_distance(landmarks: np.ndarray) -> float:
    """Distance between the two eye centres (pixels): the scale every feature and the mesh warp use."""
    points = np.asarray(landmarks, np.float64)
    return float(np.linalg.norm(points[LEFT_EYE].mean(0) - points[RIGHT_EYE].mean(0)))


@dataclass
class FaceTrack:
    """dlib's view of a sequence of frames: landmarks, features per frame, which frames had a face."""

    landmarks: np.ndarray  # (T, 68, 2)
    detected: np.ndarray  # (T,) bool: HOG found a face (else the last found box was used)
    features: dict[str, np.ndarray]  # name -> (T,)
    embeddings: np.ndarray | None = None  # (E, 128) of the frames sampled for identity, when asked for

    @property
    def face_lost(self) -> float:
        """Fraction of frames where dlib's detector found no face."""
        return float(1.0 - self.detected.mean()) if len(self.detected) else 0.0


def observe_sequence(models: FaceModels, frames: Sequence[np.ndarray], embeddings: int = 0,
                     fallback_box: Box | None = None) -> FaceTrack:
    """dlib on each frame (uint8 RGB). A frame without a detected face is measured in the last detected
    box (else `fallback_box`, else the whole frame), so the series has no holes; `detected` records it.
    `embeddings`: identity embeddings of that many frames, evenly spaced (the ResNet costs ~0.2 s a frame
    on a laptop CPU, ten times the rest; identity changes slowly, so a sample measures it)."""
    import dlib

    embed_at = set(spread_indices(len(frames), embeddings)) if embeddings else set()
    landmarks, detected, codes = [], [], []
    box = fallback_box
    for index, frame in enumerate(frames):
        image = np.ascontiguousarray(frame)
        found = models.detect(image)
        detected.append(found is not None)
        if found is not None:
            box = found
        use = box if box is not None else (0, 0, image.shape[1] - 1, image.shape[0] - 1)
        shape = models.predictor(image, dlib.rectangle(*use))
        landmarks.append([(p.x, p.y) for p in shape.parts()])
        if index in embed_at:
            codes.append(np.array(models.encoder.compute_face_descriptor(image, shape), np.float64))
    points = np.asarray(landmarks, np.float64).reshape(-1, 68, 2)
    per_frame = [expression_features(p) for p in points]
    features = {name: np.array([f[name] for f in per_frame], np.float64) for name in FEATURES}
    return FaceTrack(points, np.array(detected, bool), features, np.array(codes) if codes else None)


def spread_indices(total: int, count: int) -> list[int]:
    """`count` indices evenly spaced over 0..total-1, first and last included (all when count >= total)."""
    if total <= 0 or count <= 0:
        return []
    if count >= total:
        return list(range(total))
    return sorted({int(round(i * (total - 1) / max(1, count - 1))) for i in range(count)})


@dataclass(frozen=True)
class FeatureScore:
    """How one output feature series follows the driver's."""

    driver_std: float
    output_std: float
    r: float  # Pearson r; 0 when the output does not move at all (no co-movement to measure)
    gain: float  # std(output) / std(driver)
    counted: bool  # the driver moves it beyond landmark noise

    def to_dict(self) -> dict[str, Any]:
        return {"driver_std": self.driver_std, "output_std": self.output_std, "r": self.r, "gain": self.gain,
                "counted": self.counted}


def follow_score(driver: np.ndarray, output: np.ndarray, threshold: float) -> FeatureScore:
    """Pearson r and gain of `output` against `driver` (equal-length series).

    Zero variance: a still output (std ~0) has r = 0 (it cannot be said to follow) and gain 0; a still driver
    is below every threshold and not counted (its r is reported as 0)."""
    driver = np.asarray(driver, np.float64)
    output = np.asarray(output, np.float64)
    if driver.shape != output.shape or driver.ndim != 1:
        raise ValueError(f"series must be 1-D and of equal length, got {driver.shape} and {output.shape}")
    d_std, o_std = float(driver.std()), float(output.std())
    if d_std < 1e-12 or o_std < 1e-12:
        r = 0.0
    else:
        r = float(np.mean((driver - driver.mean()) * (output - output.mean())) / (d_std * o_std))
    gain = o_std / d_std if d_std >= 1e-12 else 0.0
    return FeatureScore(d_std, o_std, float(np.clip(r, -1.0, 1.0)), gain, d_std > threshold)


@dataclass
class PairScore:
    """One (driver clip, avatar) pair under one method (the model, or the mesh-warp reference)."""

    clip: str
    avatar: str
    frames: int
    features: dict[str, FeatureScore]
    identity_distance: float | None  # mean dlib embedding distance output -> avatar crop
    face_lost: float  # fraction of output frames without a detected face

    def to_dict(self) -> dict[str, Any]:
        return {"clip": self.clip, "avatar": self.avatar, "frames": self.frames,
                "features": {k: v.to_dict() for k, v in self.features.items()},
                "identity_distance": self.identity_distance, "face_lost": self.face_lost}


def score_pair(clip: str, avatar: str, driver: FaceTrack, output: FaceTrack, avatar_embedding: np.ndarray | None,
               thresholds: dict[str, float] | None = None) -> PairScore:
    """Every feature's follow score, identity distance (when embeddings were computed) and face loss."""
    thresholds = thresholds or NOISE_THRESHOLDS
    features = {name: follow_score(driver.features[name], output.features[name], thresholds[name])
                for name in FEATURES}
    identity = None
    if avatar_embedding is not None and output.embeddings is not None and len(output.embeddings):
        identity = float(np.mean([embedding_distance(e, avatar_embedding) for e in output.embeddings]))
    return PairScore(clip, avatar, len(output.detected), features, identity, output.face_lost)


@dataclass
class FeatureSummary:
    pairs: int  # pairs where the driver moves the feature
    mean_r: float | None
    median_gain: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "mean_r": self.mean_r, "median_gain": self.median_gain}


@dataclass
class MethodSummary:
    """The table row of one method over all pairs."""

    features: dict[str, FeatureSummary]
    identity_distance: float | None
    face_lost: float
    pairs: int
    frames: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "frames": self.frames,
                "features": {k: v.to_dict() for k, v in self.features.items()},
                "identity_distance": self.identity_distance, "face_lost": self.face_lost, **self.extra}


def summarise(pairs: Sequence[PairScore]) -> MethodSummary:
    """Mean r and median gain per feature over the pairs that count it; mean identity distance over pairs;
    face-lost fraction over all frames."""
    features = {}
    for name in FEATURES:
        counted = [p.features[name] for p in pairs if p.features[name].counted]
        features[name] = FeatureSummary(
            len(counted),
            float(np.mean([s.r for s in counted])) if counted else None,
            float(np.median([s.gain for s in counted])) if counted else None,
        )
    identities = [p.identity_distance for p in pairs if p.identity_distance is not None]
    frames = sum(p.frames for p in pairs)
    lost = sum(p.face_lost * p.frames for p in pairs) / frames if frames else 0.0
    return MethodSummary(features, float(np.mean(identities)) if identities else None, float(lost), len(pairs), frames)


def most_neutral_frame(track: FaceTrack) -> int:
    """The frame closest to a neutral face: the most closed mouth among frames whose eyes are at least as
    open as the clip's median. A clip that starts mid-word or mid-blink calibrated on its first frame asks
    the avatar to close the mouth (or open the eyes) beyond its own neutral; a user calibrates at rest."""
    eyes, mouth = track.features["eyes"], track.features["mouth"]
    candidates = np.flatnonzero(eyes >= np.median(eyes))
    return int(candidates[np.argmin(mouth[candidates])])
