"""Reconstruction metrics of the FOMM protocol: L1, AKD, AED and MKR.

The face models are dlib's (from the `dlib-bin` and `face-recognition-models` packages, which install
from PyPI and run offline):

- HOG frontal face detector: finds the face box on the real frame (and on the generated frame, for MKR);
- 68-point shape predictor (iBUG 300-W landmarks): AKD. Training uses mediapipe's face mesh as a
  teacher, so AKD deliberately uses a *different* landmark model: a generator trained to please
  mediapipe can't game a metric that mediapipe does not compute;
- ResNet face-recognition network (128-d embedding, same person below ~0.6): AED.

`face_recognition_models/__init__.py` imports `pkg_resources`, which setuptools>=81 no longer ships.
We never import that package: `importlib.util.find_spec` locates its directory without running it and
we read the `.dat` files from `models/` next to it, so any setuptools version works.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from reenact_common.errors import ReenactError

log = logging.getLogger(__name__)

AKD_REFERENCE_SIZE = 256  # AKD is reported in pixels at 256x256, whatever the evaluation size
INSTALL_HINT = "pip install 'dlib-bin>=20.0' 'face-recognition-models>=0.3'"
MODEL_FILES = {
    "landmarks": "shape_predictor_68_face_landmarks.dat",
    "embedding": "dlib_face_recognition_resnet_model_v1.dat",
}


class MetricsUnavailableError(ReenactError):
    """dlib or the face-recognition model files are missing."""


Box = tuple[int, int, int, int]  # left, top, right, bottom (inclusive), dlib's convention


@dataclass(frozen=True)
class FaceObservation:
    """What the metric models see in one image: the box used, whether a detector found it, 68 points, identity."""

    box: Box
    detected: bool
    landmarks: np.ndarray  # (68, 2) float64, x/y in pixels of the image
    embedding: np.ndarray  # (128,) float64


@dataclass(frozen=True)
class FrameScore:
    """One generated frame against its real frame."""

    l1: float
    akd: float  # pixels at 256
    aed: float
    real_face: bool  # HOG found a face on the real frame
    missing: bool  # ... but not on the generated one (MKR numerator)


@dataclass
class FaceModels:
    """dlib's detector, 68-point predictor and embedding network, loaded once per process."""

    detector: Any
    predictor: Any
    encoder: Any

    def detect(self, image: np.ndarray) -> Box | None:
        """Largest HOG face; upsample once if none (small faces in large crops)."""
        for upsample in (0, 1):
            rects = self.detector(image, upsample)
            if len(rects):
                best = max(rects, key=lambda r: r.width() * r.height())
                return (best.left(), best.top(), best.right(), best.bottom())
        return None

    def observe(self, image: np.ndarray, box: Box | None = None, detect: bool = True) -> FaceObservation:
        """Landmarks and embedding inside `box` (else the detected face, else the whole image)."""
        import dlib

        image = _as_dlib_image(image)
        found = self.detect(image) if detect else None
        detected = found is not None
        if box is None:
            h, w = image.shape[:2]
            box = found if found is not None else (0, 0, w - 1, h - 1)
        shape = self.predictor(image, dlib.rectangle(*box))
        landmarks = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
        embedding = np.array(self.encoder.compute_face_descriptor(image, shape), dtype=np.float64)
        return FaceObservation(box=box, detected=detected, landmarks=landmarks, embedding=embedding)


def model_dir() -> Path:
    """Directory of face-recognition-models' .dat files, found without importing the package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise MetricsUnavailableError(f"face-recognition-models is not installed; evaluation needs it: {INSTALL_HINT}")
    return Path(spec.origin).parent / "models"


@lru_cache(maxsize=1)
def load_face_models() -> FaceModels:
    """Load dlib's models (about a second, cached for the process)."""
    try:
        import dlib
    except ImportError:
        raise MetricsUnavailableError(f"dlib is not installed; evaluation needs it: {INSTALL_HINT}") from None
    folder = model_dir()
    paths = {name: folder / filename for name, filename in MODEL_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise MetricsUnavailableError(f"face model file(s) missing: {', '.join(missing)}; reinstall: {INSTALL_HINT}")
    log.debug("loading dlib face models from %s", folder)
    return FaceModels(
        detector=dlib.get_frontal_face_detector(),
        predictor=dlib.shape_predictor(str(paths["landmarks"])),
        encoder=dlib.face_recognition_model_v1(str(paths["embedding"])),
    )


def to_uint8(image: Any) -> np.ndarray:
    """Float RGB [0,1] (CHW tensor/array or HWC array) -> contiguous HWC uint8, as dlib wants."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return np.ascontiguousarray(array)


def _as_dlib_image(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        image = to_uint8(image)
    return np.ascontiguousarray(image)


def l1_error(generated: np.ndarray, real: np.ndarray) -> float:
    """Mean absolute error of float images in [0,1] (FOMM's L1)."""
    return float(np.mean(np.abs(np.asarray(generated, np.float64) - np.asarray(real, np.float64))))


def keypoint_distance(a: np.ndarray, b: np.ndarray, image_size: int) -> float:
    """Mean Euclidean distance between corresponding landmarks, rescaled to pixels at 256."""
    distance = np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=1).mean()
    return float(distance * AKD_REFERENCE_SIZE / image_size)


def embedding_distance(a: np.ndarray, b: np.ndarray) -> float:
    """L2 distance of identity embeddings (dlib: same person below ~0.6)."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def observe_generated(models: FaceModels, generated_uint8: np.ndarray, real: FaceObservation) -> FaceObservation:
    """Landmarks and embedding of a generated frame inside the *real* frame's face box.

    Using the real frame's box is the usual choice: AKD then measures where the face parts moved, not
    whether the detector drifted. HOG still runs on the generated frame (only when it found the real
    face) to decide MKR.
    """
    return models.observe(generated_uint8, box=real.box, detect=real.detected)


def compare(real_float: np.ndarray, real: FaceObservation, generated_float: np.ndarray, generated: FaceObservation) -> FrameScore:
    """Score one generated frame (HWC float [0,1]) against its real frame."""
    return FrameScore(
        l1=l1_error(generated_float, real_float),
        akd=keypoint_distance(generated.landmarks, real.landmarks, real_float.shape[0]),
        aed=embedding_distance(generated.embedding, real.embedding),
        real_face=real.detected,
        missing=real.detected and not generated.detected,
    )


@dataclass(frozen=True)
class MetricSet:
    """Aggregated metrics over a set of frames. MKR is None when no real frame had a detectable face."""

    l1: float
    akd: float
    aed: float
    mkr: float | None
    frames: int
    real_faces: int

    @classmethod
    def from_scores(cls, scores: list[FrameScore]) -> "MetricSet":
        if not scores:
            raise ValueError("no frames to aggregate")
        real_faces = sum(s.real_face for s in scores)
        return cls(
            l1=float(np.mean([s.l1 for s in scores])),
            akd=float(np.mean([s.akd for s in scores])),
            aed=float(np.mean([s.aed for s in scores])),
            mkr=(sum(s.missing for s in scores) / real_faces) if real_faces else None,
            frames=len(scores),
            real_faces=real_faces,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "l1": self.l1,
            "akd": self.akd,
            "aed": self.aed,
            "mkr": self.mkr,
            "frames": self.frames,
            "real_faces": self.real_faces,
        }
