"""Full-resolution output: the animated avatar at the avatar picture's own resolution, not the model's.

The model works on a 256 px crop. Pasting that crop back upscaled makes a large portrait soft exactly
where people look. But the model's warped-source blend already says, per pixel, where the output is the
avatar itself moved by the dense motion (`visibility`, 1 where the avatar is seen as it was) and how it
moved (`displacement`, models/source_blend.py). So the compositor redoes that warp on the avatar's own
pixels:

    output = v * warp(avatar at full resolution, up(displacement)) + (1 - v) * up(model output)

then blends it into the portrait through the same feathered mask as the plain paste-back
(`compositor.feather_mask`). Where the avatar is visible its own full-resolution pixels show; only
where the decoder had to invent (an opening mouth, uncovered background) the upscaled model output does.

Everything runs in the portrait's own pixel grid, in few full-resolution passes: the low-resolution
fields (displacement, and the blend weights premultiplied by the feathered mask) are resampled onto the
crop box's bounding rectangle with `cv2.warpAffine` (the crop's inverse transform, as the plain
paste-back), the displacement is converted to portrait pixels before that (it is linear), and one
`cv2.remap` warps the portrait itself:

    out = (1 - m) * portrait + up(m * v) * warp(portrait) + up(m * (1 - v) * prediction)

with m the feathered mask; the first term is fixed per avatar. No intermediate crop is resampled, so an
avatar held still (zero displacement, visibility 1) comes back exactly, pixel for pixel. A crop box
larger than `max_crop_side` is worked on a downscaled portrait (its side capped), which bounds the cost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from reenact_app.compositor import feather_mask
from reenact_app.engines.base import Animation, Engine, Keypoints, Motion, SourceState
from reenact_app.tracking import CropBox

log = logging.getLogger(__name__)

INTERPOLATIONS = ("linear", "cubic")


@dataclass(frozen=True)
class FullResolutionConfig:
    """How the full-resolution output is made."""

    max_crop_side: int = 1024  # the crop box is worked at most this many portrait pixels wide
    feather: float = 0.12  # paste-back mask edge, fraction of the crop (as the plain paste-back)
    # How the quarter-resolution displacement is upsampled: "linear" (smooth, cheapest) or "cubic".
    displacement_interpolation: str = "linear"

    def __post_init__(self):
        if not 64 <= self.max_crop_side <= 8192:
            raise ValueError(f"max_crop_side must be 64..8192 px, got {self.max_crop_side}")
        if not 0.0 <= self.feather <= 0.5:
            raise ValueError(f"feather must be 0..0.5, got {self.feather}")
        if self.displacement_interpolation not in INTERPOLATIONS:
            raise ValueError(f"displacement_interpolation must be one of {sorted(INTERPOLATIONS)}")


def _bounding_rect(inverse: np.ndarray, size: int, width: int, height: int) -> tuple[int, int, int, int]:
    """The portrait pixels the (possibly rotated) crop covers: x0, y0, x1, y1, clipped to the picture."""
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    points = corners @ inverse[:, :2].T + inverse[:, 2]
    x0, y0 = np.floor(points.min(0)).astype(int)
    x1, y1 = np.ceil(points.max(0)).astype(int)
    return max(0, int(x0)), max(0, int(y0)), min(width, int(x1)), min(height, int(y1))


def _scaled_matrix(matrix: np.ndarray, factor_x: float, factor_y: float) -> np.ndarray:
    """`matrix` (portrait -> crop) followed by a scaling of the crop coordinates."""
    return matrix * np.array([[factor_x], [factor_y]])


class FullResolutionCompositor:
    """One avatar picture and its crop box: `compose(animation)` -> the whole picture, animated.

    Built once per avatar (a few full-size passes); `compose` is the per-frame work."""

    def __init__(self, image: np.ndarray, box: CropBox, model_size: int, config: FullResolutionConfig | None = None):
        self.config = config or FullResolutionConfig()
        factor = min(1.0, self.config.max_crop_side / box.size)
        if factor < 1.0:
            h, w = image.shape[:2]
            image = cv2.resize(image, (max(1, round(w * factor)), max(1, round(h * factor))),
                               interpolation=cv2.INTER_AREA)
            box = box.scaled(factor)
        self.image = np.ascontiguousarray(image)
        self.box = box
        self.model_size = model_size
        self.matrix = box.matrix(model_size)  # portrait -> model crop
        inverse = cv2.invertAffineTransform(self.matrix)
        h, w = self.image.shape[:2]
        self.rect = _bounding_rect(inverse, model_size, w, h)
        x0, y0, x1, y1 = self.rect
        self.roi_size = (x1 - x0, y1 - y0)
        # ROI pixel -> crop pixel (for cv2.warpAffine with WARP_INVERSE_MAP, as the paste-back does).
        self._roi_to_crop = self.matrix.copy()
        self._roi_to_crop[:, 2] += self.matrix[:, :2] @ np.array([x0, y0], np.float64)
        # Displacement in crop units ([-1, 1] over S-1 pixels, align_corners=True) -> portrait pixels.
        self._to_portrait = (inverse[:, :2] * (model_size - 1) / 2.0).astype(np.float32)
        xs, ys = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
        self._xs, self._ys = xs, ys
        self._mask = feather_mask(model_size, self.config.feather, "rect")
        if not self.empty:
            self._mask_up = self._up(np.ascontiguousarray(self._mask))
            self._mask_rest = 1.0 - self._mask_up

    @property
    def empty(self) -> bool:
        return self.roi_size[0] <= 0 or self.roi_size[1] <= 0

    def region(self) -> np.ndarray:
        """The portrait's pixels under the crop box's bounding rectangle."""
        x0, y0, x1, y1 = self.rect
        return self.image[y0:y1, x0:x1]

    def _up(self, field: np.ndarray, size: int | None = None, align_corners: bool = False,
            interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """A field over the crop (side `size`, the model size by default) resampled onto the ROI."""
        size = size or self.model_size
        matrix = self._roi_to_crop
        if size != self.model_size:
            if align_corners:
                f = (size - 1) / max(1, self.model_size - 1)
                matrix = _scaled_matrix(matrix, f, f)
            else:
                f = size / self.model_size
                matrix = _scaled_matrix(matrix, f, f)
                matrix[:, 2] += 0.5 * f - 0.5
        return cv2.warpAffine(field, matrix, self.roi_size, flags=interpolation | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)

    def warp_avatar(self, displacement: np.ndarray) -> np.ndarray:
        """The portrait's crop-box rectangle warped by the model's motion (h, w, 2), at full resolution."""
        h, w = displacement.shape[:2]
        if h != w:
            raise ValueError(f"the displacement grid must be square, got {w}x{h}")
        in_pixels = cv2.transform(np.ascontiguousarray(displacement, np.float32), self._to_portrait)
        flags = cv2.INTER_CUBIC if self.config.displacement_interpolation == "cubic" else cv2.INTER_LINEAR
        # One channel at a time: cv2's vectorised paths cover 1- and 3-channel images, not 2.
        map_x = cv2.add(self._xs, self._up(np.ascontiguousarray(in_pixels[..., 0]), h, True, flags))
        map_y = cv2.add(self._ys, self._up(np.ascontiguousarray(in_pixels[..., 1]), h, True, flags))
        return cv2.remap(self.image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def upscale(self, prediction: np.ndarray) -> np.ndarray:
        """The model's output crop resampled onto the portrait's crop-box rectangle (the plain paste-back)."""
        return self._up(prediction)

    def compose(self, animation: Animation) -> np.ndarray:
        """The whole picture with the animated face: full resolution where the model gave its motion,
        the upscaled crop (today's paste-back) where it did not (motion None)."""
        out = self.image.copy()
        if self.empty:
            return out
        prediction = animation.image
        if prediction.shape[0] != self.model_size:
            prediction = cv2.resize(prediction, (self.model_size, self.model_size), interpolation=cv2.INTER_LINEAR)
        face = self.upscale(prediction)
        if animation.motion is not None:
            visibility = np.ascontiguousarray(animation.motion.visibility, np.float32)
            visible = self._up(visibility, visibility.shape[0])
            # (v * warped + (1 - v) * upscaled) / (v + (1 - v)): cv2's vectorised weighted blend.
            face = cv2.blendLinear(self.warp_avatar(animation.motion.displacement), face, visible, 1.0 - visible)
        x0, y0, x1, y1 = self.rect
        out[y0:y1, x0:x1] = cv2.blendLinear(face, self.region(), self._mask_up, self._mask_rest)
        return out


class MotionTap(Engine):
    """Wraps an engine so code that only knows `animate` (the session, the offline driving loop) runs
    `animate_with_motion` underneath: `last` holds the newest Animation for the compositor."""

    def __init__(self, engine: Engine):
        self.inner = engine
        self.last: Animation | None = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name

    @property
    def device(self) -> str:  # type: ignore[override]
        return self.inner.device

    @property
    def image_size(self) -> int:  # type: ignore[override]
        return self.inner.image_size

    @property
    def notice(self) -> str | None:  # type: ignore[override]
        return self.inner.notice

    def describe(self) -> str:
        return self.inner.describe()

    def encode_source(self, image: np.ndarray) -> SourceState:
        return self.inner.encode_source(image)

    def detect_keypoints(self, image: np.ndarray) -> Keypoints:
        return self.inner.detect_keypoints(image)

    def animate_with_motion(self, source: SourceState, kp_driving: Keypoints) -> Animation:
        self.last = self.inner.animate_with_motion(source, kp_driving)
        return self.last

    def animate(self, source: SourceState, kp_driving: Keypoints) -> np.ndarray:
        return self.animate_with_motion(source, kp_driving).image

    def close(self) -> None:
        self.inner.close()


def full_frame_compositor(image: np.ndarray, model_size: int, tracked: bool, max_side: int,
                          config: FullResolutionConfig | None = None) -> FullResolutionCompositor:
    """The compositor for a whole avatar picture: its face box (the face tracker's, as the avatar crop
    was made, or the centre square for centre crops) on the picture capped to `max_side` (long side)
    and trimmed to even sides (H.264 needs them)."""
    from reenact_app.tracking import center_box, prepare_avatar

    box = prepare_avatar(image, model_size).box if tracked else center_box(image)
    h, w = image.shape[:2]
    factor = min(1.0, max_side / max(h, w))
    if factor < 1.0:
        image = cv2.resize(image, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)
        box = box.scaled(factor)
    h, w = image.shape[:2]
    image = image[: h - h % 2, : w - w % 2]
    config = config or FullResolutionConfig(max_crop_side=8192)  # the picture cap bounds the cost
    return FullResolutionCompositor(image, box, model_size, config)
