"""AnimationSession: one avatar, one engine, motion relative to a calibrated reference frame.

The avatar work (`encode_source`) runs once per avatar; the adapt-scale factor (convex-hull areas of
the avatar's and the reference frame's keypoints) runs once per calibration; per frame there is one
keypoint detection, a few numpy operations and one `animate` call.

Live video passes each frame's timestamp to `driving_keypoints`, which then smooths the keypoints with a
One Euro filter (jitter of the keypoint detector off, fast motion kept). The filter lives here, beside
the reference it is relative to: a new reference (calibration) or a new avatar starts it afresh.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np

from models.motion import convex_hull_area
from reenact_app.engines.base import Engine, Keypoints, SourceState
from reenact_app.expression import ExpressionRetargeter, ExpressionSettings
from reenact_app.filters import OneEuroConfig, OneEuroFilter

log = logging.getLogger(__name__)


@dataclass
class MotionSettings:
    relative: bool = True  # motion since the reference frame (FOMM demo); False: absolute keypoints
    adapt_scale: bool = True  # scale motion by the avatar/driver face-size ratio
    relative_jacobian: bool = True


def default_keypoint_smoothing() -> OneEuroConfig:
    """Keypoint smoothing of live video (docs/pipeline.md)."""
    return OneEuroConfig(min_cutoff=1.0, beta=5.0)


def _inverse_2x2(m: np.ndarray) -> np.ndarray:
    a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    return np.stack([np.stack([d, -b], -1), np.stack([-c, a], -1)], -2) / det[..., None, None]


def relative_keypoints(
    source: Keypoints, driving: Keypoints, reference: Keypoints, scale: float, relative_jacobian: bool = True
) -> Keypoints:
    """numpy twin of models.normalize_kp (relative movement) with a precomputed scale."""
    value = (driving.value - reference.value) * scale + source.value
    jacobian = driving.jacobian
    if relative_jacobian and driving.jacobian is not None and reference.jacobian is not None:
        jacobian = driving.jacobian @ _inverse_2x2(reference.jacobian) @ source.jacobian
    return Keypoints(value=value.astype(np.float32), jacobian=None if jacobian is None else jacobian.astype(np.float32))


@dataclass(frozen=True)
class PreparedFrame:
    """One driving frame's motion, made by `AnimationSession.prepare` and drawn by `render_prepared`.

    It carries everything the drawing reads (the avatar it was made for, this frame's expression state),
    so a pipelined loop can prepare the next frame while this one is drawn (reenact_app/drive.py)."""

    keypoints: Keypoints
    source: SourceState
    expression: ExpressionRetargeter  # a copy taken right after this frame's keypoints: its eye,
    # brow and mouth state (the retargeter rebinds, never mutates, what `finish` reads)
    relative: bool

    def finish(self, image: np.ndarray, crop_to_image: np.ndarray | None = None) -> np.ndarray:
        """The expression's picture work (mouth, brows, lids) on `image`, the model's crop or a picture it
        was composed into (`crop_to_image`: 2x3, model-crop pixels -> picture pixels), with this frame's
        expression state; none in absolute motion."""
        if not self.relative:
            return image
        return self.expression.finish(image, self.source.keypoints.value, self.keypoints.value, crop_to_image)


class AnimationSession:
    """Drives one avatar with driving-frame crops. Not thread-safe: own it from one worker thread; the
    one exception is `prepare` in one thread beside `render_prepared` in another (pipelined driving)."""

    def __init__(self, engine: Engine, settings: MotionSettings | None = None,
                 expression: ExpressionSettings | None = None, smoothing: OneEuroConfig | None = None):
        self.engine = engine
        self.settings = settings or MotionSettings()
        self.expression = ExpressionRetargeter(expression)
        self.set_smoothing(smoothing or default_keypoint_smoothing())
        self.last_keypoints: Keypoints | None = None  # of the last rendered frame
        self.source: SourceState | None = None
        self.reference: Keypoints | None = None
        self.scale = 1.0
        self._calibrate_next = True

    @property
    def image_size(self) -> int:
        return self.engine.image_size

    def set_avatar(self, crop: np.ndarray, landmarks: np.ndarray | None = None) -> None:
        """Cache the avatar (uint8 RGB at model size); keeps the calibration reference but recomputes scale.
        `landmarks`: the avatar crop's face mesh (pixels), for expression retargeting (None: off)."""
        self.source = self.engine.encode_source(crop)
        self.expression.set_avatar(landmarks, self.source.keypoints.value, crop.shape[0], crop)
        if self.reference is not None:
            self.scale = self._movement_scale(self.reference)
        self.reset_smoothing()

    def set_smoothing(self, config: OneEuroConfig) -> None:
        """The keypoint smoothing applied when `driving_keypoints` gets a timestamp (live)."""
        self.smoothing = config
        self._kp_filter = OneEuroFilter.from_config(config)
        self._jac_filter = OneEuroFilter.from_config(config)

    def reset_smoothing(self) -> None:
        """Forget the filter state: the next keypoints pass unchanged (new driver, avatar or reference)."""
        self._kp_filter.reset()
        self._jac_filter.reset()

    def calibrate(self, crop: np.ndarray | None = None, landmarks: np.ndarray | None = None) -> None:
        """Take `crop` (or the next frame given to `animate`) as the neutral reference pose."""
        self.reset_smoothing()
        if crop is None:
            self._calibrate_next = True
            return
        self._set_reference(self.engine.detect_keypoints(crop), landmarks)

    def _set_reference(self, kp: Keypoints, landmarks: np.ndarray | None) -> None:
        self.reference = kp
        self.expression.set_reference(landmarks)
        self.scale = self._movement_scale(kp)
        self._calibrate_next = False
        log.info("calibrated: movement scale %.3f", self.scale)

    def _movement_scale(self, reference: Keypoints) -> float:
        if not self.settings.adapt_scale or self.source is None:
            return 1.0
        driving_area = convex_hull_area(reference.value)
        if driving_area <= 0:
            return 1.0
        return float(np.sqrt(convex_hull_area(self.source.keypoints.value) / driving_area))

    def driving_keypoints(self, crop: np.ndarray, landmarks: np.ndarray | None = None,
                          timestamp: float | None = None) -> Keypoints:
        """Keypoints to animate with: relative to the reference (calibrating on first use) or absolute,
        with the driver's mouth openness retargeted when `landmarks` (the crop's face mesh) are given,
        then smoothed over time when `timestamp` (the frame's media time, seconds) is given."""
        kp = self._motion_keypoints(crop, landmarks)
        return kp if timestamp is None else self._smooth(kp, timestamp)

    def _smooth(self, kp: Keypoints, timestamp: float) -> Keypoints:
        if not self.smoothing.enabled:
            return kp
        value = np.asarray(self._kp_filter(kp.value, timestamp), np.float32)
        jacobian = None if kp.jacobian is None else np.asarray(self._jac_filter(kp.jacobian, timestamp), np.float32)
        return Keypoints(value, jacobian)

    def _motion_keypoints(self, crop: np.ndarray, landmarks: np.ndarray | None) -> Keypoints:
        kp = self.engine.detect_keypoints(crop)
        if self._calibrate_next or self.reference is None:
            self._set_reference(kp, landmarks)
        elif self.expression.reference is None and landmarks is not None:
            self.expression.set_reference(landmarks)  # the mesh missed the calibration frame
        if not self.settings.relative:
            return kp
        scale = self.scale if self.settings.adapt_scale else 1.0
        kp = relative_keypoints(self.source.keypoints, kp, self.reference, scale, self.settings.relative_jacobian)
        return Keypoints(self.expression.adjust_keypoints(kp.value, landmarks).astype(np.float32), kp.jacobian)

    def render(self, kp_driving: Keypoints) -> np.ndarray:
        """The avatar at `kp_driving` (from `driving_keypoints`, possibly smoothed), with the expression
        measured on the same frame applied to the picture."""
        self.last_keypoints = kp_driving
        return self.finish(self.engine.animate(self.source, kp_driving), kp_driving)

    def finish(self, image: np.ndarray, kp_driving: Keypoints, crop_to_image: np.ndarray | None = None) -> np.ndarray:
        """Expression work on the picture itself (mouth, brows, lids), on the model's crop or on any
        picture it was composed into (`crop_to_image`: 2x3, model-crop pixels -> picture pixels), with the
        retargeter's present state (`PreparedFrame.finish` does it with a frame's own)."""
        return PreparedFrame(kp_driving, self.source, self.expression, self.settings.relative).finish(image, crop_to_image)

    def prepare(self, crop: np.ndarray, landmarks: np.ndarray | None = None,
                timestamp: float | None = None) -> PreparedFrame:
        """The first half of `animate`: this frame's driving keypoints (as `driving_keypoints`), frozen
        with what `render_prepared` needs. Prepare and render may run in two threads, frames apart, as
        long as each half is called from one thread and frames are rendered in the order prepared."""
        if self.source is None:
            raise RuntimeError("set_avatar() must be called before prepare()")
        kp = self.driving_keypoints(crop, landmarks, timestamp)
        return PreparedFrame(kp, self.source, copy.copy(self.expression), self.settings.relative)

    def render_prepared(self, frame: PreparedFrame, finish: bool = True) -> np.ndarray:
        """The second half of `animate`: the avatar at the prepared keypoints, with its expression
        (`finish=False`: the model's frame alone, for a caller that finishes a composed picture)."""
        self.last_keypoints = frame.keypoints
        image = self.engine.animate(frame.source, frame.keypoints)
        return frame.finish(image) if finish else image

    def animate(self, crop: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """One driving crop (uint8 RGB at model size) -> animated avatar (uint8 RGB at model size).
        `landmarks`: the crop's face-mesh landmarks (pixels), used by expression retargeting."""
        if self.source is None:
            raise RuntimeError("set_avatar() must be called before animate()")
        return self.render(self.driving_keypoints(crop, landmarks))
