"""Face tracking and cropping with mediapipe: the driving crop for every frame and the avatar crop.

Public API (stable; other modules and the GUI rely on it):

    from reenact_app.tracking import FaceTracker, TrackerConfig, prepare_avatar, CropBox

    tracker = FaceTracker(TrackerConfig(crop_size=256, margin=0.45, align_roll=False))
    res = tracker.track(frame_rgb, timestamp=None)   # uint8 RGB HxWx3, time in seconds (default: now)
    res.face_found      # bool: a face was detected in this frame
    res.crop            # uint8 RGB (crop_size, crop_size, 3) from the smoothed box; None before any face
    res.box / raw_box   # CropBox(cx, cy, size, angle) in frame pixels: smoothed (used) / this frame's
    res.matrix          # 2x3 affine frame -> crop (cv2.warpAffine convention)
    res.landmarks       # (468, 2) float32 face-mesh points in frame pixels, or None
    tracker.freeze(True) / tracker.redetect() / tracker.reset() / tracker.close()
    tracker.update_config(margin=0.5, align_roll=True)  # live settings; tracker.detect(frame) -> faces

    av = prepare_avatar(image_rgb, size=256)          # same detection + margin on a still image
                                                      # (grey, RGBA, 16-bit accepted: see to_rgb8)
    av.crop, av.box, av.matrix, av.face_found, av.message
    full = av.paste_back(animated_crop)               # animated crop blended back into the full image

    crop_image(image, box, size)                      # the warp used by both (anti-aliased downscale)
    detect_faces(image_rgb) -> list[Face]             # one-shot detection, largest first

How it works (why):
- mediapipe face detection gives boxes + eye keypoints every frame (5-8 ms at 360p on the 2-core dev
  box, frames downscaled to 640 px first). It has two models: full range (faces up to ~5 m, small in the
  frame) and short range (faces within ~2 m, up to the whole frame: a user leaning into a laptop camera,
  a 224 px talking-head close-up, where the full-range model finds nothing). The tracker runs one of
  them per frame, the one that found the face last; when it finds nothing it tries the other on the
  same frame and keeps that one while it finds the face. Among
  several faces we pick the largest and then stay on the one overlapping the previous box (IoU), so a
  person walking behind you does not steal the crop; after `reacquire_after` s without it we take the
  largest again.
- The crop box is a square of side face_size * (1 + 2*margin) around the face, shifted up a little to
  include the forehead, the framing of the VoxCeleb crops the models were trained on.
- Box centre, size and roll pass through One Euro filters (in units of the crop size), which removes the
  detector's frame-to-frame jitter while a still face and adds little lag on a moving one
  (numbers in docs/pipeline.md).
- Face mesh runs on the stabilised crop (where the face is large and centred) and gives landmarks in
  frame pixels, for overlays and diagnostics.
- Freeze keeps the crop box fixed (a call with a fixed camera: no crop motion at all); redetect() drops
  the target and the filter state and takes the next detection.

Not thread-safe: own a FaceTracker from one thread (mediapipe graphs are not reentrant).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from reenact_app.compositor import paste_back as _paste_back
from reenact_app.filters import OneEuroConfig, OneEuroFilter

log = logging.getLogger(__name__)

os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ logging: warnings and up only


@dataclass
class TrackerConfig:
    """Crop geometry, detection and smoothing settings (defaults chosen from measurements)."""

    crop_size: int = 256  # output crop side (the model's image size)
    margin: float = 0.45  # extra space on each side, as a fraction of the face size
    shift_y: float = -0.08  # crop centre offset (fraction of face size); negative = up (forehead)
    align_roll: bool = False  # rotate so the eye line is level
    detection_confidence: float = 0.5
    model_selection: int = 1  # mediapipe: 0 = short range (< 2 m), 1 = full range (< 5 m); tried first
    other_range_fallback: bool = True  # no face with one model: try the other (near and far faces alike)
    use_mesh: bool = True  # face mesh landmarks on the crop (overlays, diagnostics)
    # One Euro on the box, in crop sizes per second (measured choice: docs/pipeline.md). The detector's
    # size estimate shakes ~8x more than its centre and size changes are slow, so size is smoothed harder.
    smoothing: OneEuroConfig = field(default_factory=lambda: OneEuroConfig(min_cutoff=1.0, beta=1.0))
    size_smoothing: OneEuroConfig = field(default_factory=lambda: OneEuroConfig(min_cutoff=0.3, beta=0.5))
    min_iou: float = 0.2  # a detection overlapping the tracked face at least this much is the same face
    reacquire_after: float = 0.5  # seconds without the tracked face before switching to the largest one
    jump_reset: float = 0.6  # a raw box this far (in face sizes) from the filtered one resets the filter
    min_face_fraction: float = 0.04  # ignore faces smaller than this fraction of the frame's short side
    max_detect_side: int = 640  # larger frames are downscaled for detection only (the model sees 192 px anyway)
    border: str = "replicate"  # how the crop is filled outside the frame: "replicate" or "constant"


@dataclass(frozen=True)
class CropBox:
    """A square crop: centre (cx, cy) and side `size` in image pixels, rotated by `angle` degrees."""

    cx: float
    cy: float
    size: float
    angle: float = 0.0

    def matrix(self, out_size: int) -> np.ndarray:
        """2x3 affine image -> crop of side out_size (for cv2.warpAffine)."""
        s = out_size / self.size
        a = math.radians(self.angle)
        c, k = s * math.cos(a), s * math.sin(a)
        half = out_size / 2.0
        return np.array(
            [[c, k, half - (c * self.cx + k * self.cy)], [-k, c, half - (-k * self.cx + c * self.cy)]], np.float64
        )

    def corners(self) -> np.ndarray:
        """(4, 2) corners in image pixels (top-left, top-right, bottom-right, bottom-left), for drawing."""
        h = self.size / 2.0
        a = math.radians(self.angle)
        c, s = math.cos(a), math.sin(a)
        local = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
        rot = np.array([[c, -s], [s, c]])  # inverse of the crop rotation
        return local @ rot.T + (self.cx, self.cy)

    def xyxy(self) -> tuple[float, float, float, float]:
        """Axis-aligned bounds (ignores rotation)."""
        h = self.size / 2.0
        return (self.cx - h, self.cy - h, self.cx + h, self.cy + h)

    def scaled(self, factor: float) -> "CropBox":
        return CropBox(self.cx * factor, self.cy * factor, self.size * factor, self.angle)


@dataclass
class Face:
    """One mediapipe detection in image pixels."""

    x: float
    y: float
    w: float
    h: float
    score: float
    keypoints: np.ndarray  # (6, 2): right eye, left eye, nose tip, mouth, right ear, left ear (image px)

    @property
    def area(self) -> float:
        return self.w * self.h

    @property
    def eye_angle(self) -> float:
        """Roll in degrees of the line from the eye on the image's left to the one on its right."""
        (x0, y0), (x1, y1) = self.keypoints[0], self.keypoints[1]
        if x0 > x1:
            (x0, y0), (x1, y1) = (x1, y1), (x0, y0)
        return math.degrees(math.atan2(y1 - y0, x1 - x0))

    def crop_box(self, margin: float, shift_y: float, roll: bool) -> CropBox:
        face = max(self.w, self.h)
        angle = self.eye_angle if roll else 0.0
        # shift "up" along the face's own vertical axis, so a tilted head keeps its forehead
        a = math.radians(angle)
        dx, dy = -math.sin(a) * shift_y * face, math.cos(a) * shift_y * face
        return CropBox(self.x + self.w / 2 + dx, self.y + self.h / 2 + dy, face * (1 + 2 * margin), angle)

    def iou(self, other: "Face") -> float:
        ax1, ay1, bx1, by1 = self.x + self.w, self.y + self.h, other.x + other.w, other.y + other.h
        iw = max(0.0, min(ax1, bx1) - max(self.x, other.x))
        ih = max(0.0, min(ay1, by1) - max(self.y, other.y))
        inter = iw * ih
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0


@dataclass
class TrackResult:
    face_found: bool
    crop: np.ndarray | None
    box: CropBox | None
    raw_box: CropBox | None
    matrix: np.ndarray | None
    landmarks: np.ndarray | None = None
    score: float = 0.0
    num_faces: int = 0
    frozen: bool = False
    ms: float = 0.0


def crop_image(image: np.ndarray, box: CropBox, size: int, border: str = "replicate") -> np.ndarray:
    """Warp the square `box` of `image` to (size, size). Strong downscales go through INTER_AREA first
    (a 2000 px portrait face to 256 px would alias badly with a plain bilinear warp)."""
    mode = cv2.BORDER_REPLICATE if border == "replicate" else cv2.BORDER_CONSTANT
    scale = size / box.size
    if scale < 0.5:
        h, w = image.shape[:2]
        half = box.size * 0.75  # covers the rotated square (sqrt(2)/2 < 0.75)
        x0, y0 = max(0, int(box.cx - half)), max(0, int(box.cy - half))
        x1, y1 = min(w, int(math.ceil(box.cx + half))), min(h, int(math.ceil(box.cy + half)))
        if x1 > x0 and y1 > y0:
            region = image[y0:y1, x0:x1]
            f = scale * 1.25
            small = cv2.resize(
                region, (max(1, round((x1 - x0) * f)), max(1, round((y1 - y0) * f))), interpolation=cv2.INTER_AREA
            )
            fx, fy = small.shape[1] / (x1 - x0), small.shape[0] / (y1 - y0)
            sub = CropBox((box.cx - x0) * fx, (box.cy - y0) * fy, box.size * (fx + fy) / 2, box.angle)
            return cv2.warpAffine(small, sub.matrix(size), (size, size), flags=cv2.INTER_LINEAR, borderMode=mode)
    return cv2.warpAffine(image, box.matrix(size), (size, size), flags=cv2.INTER_LINEAR, borderMode=mode)


def _downscale_for_detection(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = image.shape[:2]
    side = max(h, w)
    if side <= max_side:
        return image, 1.0
    f = max_side / side
    return cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA), f


def _faces_from_result(result, width: int, height: int, scale: float) -> list[Face]:
    faces = []
    for det in result.detections or []:
        rb = det.location_data.relative_bounding_box
        kps = np.array([[k.x * width, k.y * height] for k in det.location_data.relative_keypoints], np.float64)
        faces.append(
            Face(
                rb.xmin * width / scale,
                rb.ymin * height / scale,
                rb.width * width / scale,
                rb.height * height / scale,
                float(det.score[0]) if det.score else 0.0,
                (kps / scale).astype(np.float32),
            )
        )
    faces.sort(key=lambda f: f.area, reverse=True)
    return faces


def _check_rgb(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB HxWx3 image, got {getattr(image, 'shape', type(image))}")
    return np.ascontiguousarray(image)


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Any common decoded picture -> uint8 RGB: greyscale, single channel, RGBA (composited on white,
    so a transparent background doesn't turn black), 16-bit and float [0, 1] images."""
    img = np.asarray(image)
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype.kind == "f":
        scale = 255.0 if np.nanmax(img) <= 1.0 else 1.0
        img = np.clip(np.nan_to_num(img) * scale, 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[2] not in (1, 3, 4) or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"not an image: shape {image.shape}")
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] == 4:
        alpha = img[..., 3:4].astype(np.float32) / 255.0
        img = (img[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    return np.ascontiguousarray(img)


def detect_faces(image_rgb: np.ndarray, config: TrackerConfig | None = None) -> list[Face]:
    """One-shot detection on a still image, largest face first. Tries the full-range model, then the
    short-range one (which finds faces that fill the whole picture)."""
    import mediapipe as mp

    config = config or TrackerConfig()
    image_rgb = _check_rgb(image_rgb)
    small, f = _downscale_for_detection(image_rgb, config.max_detect_side)
    h, w = small.shape[:2]
    for model in (config.model_selection, 1 - config.model_selection):
        with mp.solutions.face_detection.FaceDetection(
            model_selection=model, min_detection_confidence=config.detection_confidence
        ) as det:
            faces = _faces_from_result(det.process(small), w, h, f)
        min_side = config.min_face_fraction * min(image_rgb.shape[:2])
        faces = [x for x in faces if max(x.w, x.h) >= min_side]
        if faces:
            return faces
    return []


class FaceTracker:
    """Per-frame face detection -> stabilised square crop. See the module docstring."""

    def __init__(self, config: TrackerConfig | None = None):
        import mediapipe as mp

        self.config = config or TrackerConfig()
        self._detectors: dict[int, object] = {}  # model_selection -> detector graph, made on first use
        self._model = self.config.model_selection  # the model that found the face last
        self._detector(self._model)  # the other one only when this one first misses
        self._mesh = None
        if self.config.use_mesh:
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=False, max_num_faces=1, refine_landmarks=False, min_detection_confidence=0.5
            )
        self._filter = OneEuroFilter.from_config(self.config.smoothing)
        self._size_filter = OneEuroFilter.from_config(self.config.size_smoothing)
        self._target: Face | None = None
        self._last_seen: float = -math.inf
        self._box: CropBox | None = None
        self._ref: float = 1.0  # face size used to normalise the filter's units
        self._frozen = False
        self._closed = False

    # -- user controls -------------------------------------------------------------------------
    @property
    def frozen(self) -> bool:
        return self._frozen

    def freeze(self, on: bool = True) -> None:
        """Keep the current crop box fixed (on) or follow the face again (off)."""
        self._frozen = bool(on)
        log.info("crop %s", "frozen" if on else "following the face")

    def redetect(self) -> None:
        """Forget the tracked face and the filter state; the next frame picks the largest face anew.
        While frozen, the box is re-frozen on that new detection."""
        self._target = None
        self._filter.reset()
        self._size_filter.reset()
        self._box = None
        self._last_seen = -math.inf

    def reset(self) -> None:
        self.redetect()
        self._frozen = False

    def update_config(self, **changes) -> None:
        """Change settings live (margin, shift_y, align_roll, smoothing...): the next frame uses them."""
        for k, v in changes.items():
            if not hasattr(self.config, k):
                raise AttributeError(f"TrackerConfig has no field {k!r}")
            setattr(self.config, k, v)
        if "smoothing" in changes:
            self._filter = OneEuroFilter.from_config(self.config.smoothing)
        if "size_smoothing" in changes:
            self._size_filter = OneEuroFilter.from_config(self.config.size_smoothing)
        if "model_selection" in changes:
            self._model = self.config.model_selection

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for detector in self._detectors.values():
            detector.close()
        self._detectors.clear()
        if self._mesh is not None:
            self._mesh.close()

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- per frame ----------------------------------------------------------------------------
    @property
    def detection_model(self) -> int:
        """The mediapipe detection model in use: 1 = full range, 0 = short range (see the module doc)."""
        return self._model

    def _detector(self, model: int):
        if model not in self._detectors:
            import mediapipe as mp

            self._detectors[model] = mp.solutions.face_detection.FaceDetection(
                model_selection=model, min_detection_confidence=self.config.detection_confidence
            )
        return self._detectors[model]

    def _detect_with(self, model: int, small: np.ndarray, scale: float, min_side: float) -> list[Face]:
        h, w = small.shape[:2]
        faces = _faces_from_result(self._detector(model).process(small), w, h, scale)
        return [x for x in faces if max(x.w, x.h) >= min_side]

    def detect(self, frame_rgb: np.ndarray) -> list[Face]:
        """All faces in this frame, largest first: one detector run while the current model finds the
        face, both when it does not (then the other model becomes the current one if it found a face)."""
        small, f = _downscale_for_detection(frame_rgb, self.config.max_detect_side)
        min_side = self.config.min_face_fraction * min(frame_rgb.shape[:2])
        faces = self._detect_with(self._model, small, f, min_side)
        if not faces and self.config.other_range_fallback:
            other = 1 - self._model
            faces = self._detect_with(other, small, f, min_side)
            if faces:
                log.debug("face found by the %s-range detector: using it", "full" if other else "short")
                self._model = other
        return faces

    def _choose(self, faces: list[Face], now: float) -> Face | None:
        if not faces:
            return None
        if self._target is not None:
            best = max(faces, key=lambda x: x.iou(self._target))
            if best.iou(self._target) >= self.config.min_iou:
                return best
            if now - self._last_seen < self.config.reacquire_after:
                return None  # the tracked face is gone for now: don't jump to someone else yet
            log.info("tracked face lost for %.1f s: switching to the largest face", now - self._last_seen)
        return faces[0]

    def _smooth(self, raw: CropBox, t: float) -> CropBox:
        cfg = self.config
        if self._filter.initialised and self._box is not None:
            jump = math.hypot(raw.cx - self._box.cx, raw.cy - self._box.cy) / max(self._box.size, 1e-6)
            if jump > cfg.jump_reset * (1 + 2 * cfg.margin):  # a cut or another face: don't glide across
                self._filter.reset()
                self._size_filter.reset()
        if not self._filter.initialised:
            self._ref = raw.size  # filter units: crop sizes (speeds in crop sizes per second)
        r = self._ref
        y = np.asarray(self._filter(np.array([raw.cx / r, raw.cy / r, math.radians(raw.angle)]), t), np.float64)
        size = float(np.asarray(self._size_filter(np.array([raw.size / r]), t))[0]) * r
        return CropBox(float(y[0] * r), float(y[1] * r), size, math.degrees(float(y[2])))

    def track(self, frame_rgb: np.ndarray, timestamp: float | None = None) -> TrackResult:
        """Detect, pick and smooth; return the crop for this frame. `timestamp` in seconds drives the
        filter (pass the media time for video files read faster than real time)."""
        t0 = time.perf_counter()
        frame_rgb = _check_rgb(frame_rgb)
        now = time.monotonic() if timestamp is None else float(timestamp)
        cfg = self.config
        faces = self.detect(frame_rgb)
        face = self._choose(faces, now)
        raw = None
        if face is not None:
            self._target, self._last_seen = face, now
            raw = face.crop_box(cfg.margin, cfg.shift_y, cfg.align_roll)
            if not (self._frozen and self._box is not None):
                self._box = self._smooth(raw, now)
        box = self._box
        crop = matrix = landmarks = None
        if box is not None:
            matrix = box.matrix(cfg.crop_size)
            crop = crop_image(frame_rgb, box, cfg.crop_size, cfg.border)
            if self._mesh is not None and face is not None:
                landmarks = self._landmarks(crop, matrix)
        return TrackResult(
            face_found=face is not None,
            crop=crop,
            box=box,
            raw_box=raw,
            matrix=matrix,
            landmarks=landmarks,
            score=face.score if face is not None else 0.0,
            num_faces=len(faces),
            frozen=self._frozen,
            ms=(time.perf_counter() - t0) * 1000.0,
        )

    def _landmarks(self, crop: np.ndarray, matrix: np.ndarray) -> np.ndarray | None:
        res = self._mesh.process(crop)
        if not res.multi_face_landmarks:
            return None
        s = crop.shape[0]
        pts = np.array([[p.x * s, p.y * s] for p in res.multi_face_landmarks[0].landmark], np.float64)
        inv = cv2.invertAffineTransform(matrix)
        return (pts @ inv[:, :2].T + inv[:, 2]).astype(np.float32)


def mesh_landmarks(image_rgb: np.ndarray) -> np.ndarray | None:
    """The face mesh (468 points, pixels) of the largest face in a still image, e.g. an avatar crop;
    None when mediapipe finds no face (many paintings and drawings)."""
    import mediapipe as mp

    image_rgb = to_rgb8(image_rgb)
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False,
                                         min_detection_confidence=0.5) as mesh:
        res = mesh.process(image_rgb)
    if not res.multi_face_landmarks:
        return None
    h, w = image_rgb.shape[:2]
    return np.array([[p.x * w, p.y * h] for p in res.multi_face_landmarks[0].landmark], np.float32)


def landmarks_in_crop(result: TrackResult) -> np.ndarray | None:
    """The face-mesh landmarks of a track result in its crop's pixels (the tracker keeps them in the
    frame's), or None when the mesh did not run or found nothing."""
    if result.landmarks is None or result.matrix is None:
        return None
    m = result.matrix
    return (result.landmarks @ m[:, :2].T + m[:, 2]).astype(np.float32)


@dataclass
class AvatarCrop:
    """The avatar's model-size crop and how to put an animated crop back into the full picture."""

    image: np.ndarray  # the full avatar picture, uint8 RGB
    crop: np.ndarray  # uint8 RGB (size, size, 3)
    box: CropBox
    matrix: np.ndarray  # 2x3 image -> crop
    face_found: bool
    message: str = ""  # a warning for the user when no face was found (centre crop used)
    num_faces: int = 0

    @property
    def size(self) -> int:
        return self.crop.shape[0]

    def paste_back(self, animated: np.ndarray, feather: float = 0.12, shape: str = "rect") -> np.ndarray:
        """Blend an animated crop (any square size; resized to the crop size) into the full image."""
        if animated.shape[:2] != self.crop.shape[:2]:
            animated = cv2.resize(animated, self.crop.shape[1::-1], interpolation=cv2.INTER_LINEAR)
        return _paste_back(self.image, animated, self.matrix, feather, shape)


def center_box(image: np.ndarray) -> CropBox:
    """The largest centred square of the image (fallback crop when no face is found)."""
    h, w = image.shape[:2]
    return CropBox(w / 2.0, h / 2.0, float(min(h, w)), 0.0)


def prepare_avatar(image_rgb: np.ndarray, size: int = 256, config: TrackerConfig | None = None) -> AvatarCrop:
    """Crop the avatar picture around its largest face with the same framing as the driving crop.

    No face: returns the centre crop with face_found=False and a message the UI shows (the user may
    accept it, e.g. for a stylised painting the detector misses)."""
    config = config or TrackerConfig()
    image_rgb = to_rgb8(image_rgb)
    faces = detect_faces(image_rgb, config)
    if faces:
        box = faces[0].crop_box(config.margin, config.shift_y, config.align_roll)
        msg = "" if len(faces) == 1 else f"{len(faces)} faces found in the avatar: using the largest one"
        found = True
    else:
        box = center_box(image_rgb)
        msg = "No face found in the avatar image: using a centre crop. Choose a picture with a clear, frontal face."
        found = False
    if msg:
        log.warning(msg)
    crop = crop_image(image_rgb, box, size, config.border)
    return AvatarCrop(image_rgb, crop, box, box.matrix(size), found, msg, len(faces))
