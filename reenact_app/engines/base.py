"""The one interface every inference engine implements (PyTorch, ONNX Runtime, TensorRT).

The model's work is split into three calls so a live session does the avatar work once:
- `encode_source(avatar)`: once per avatar (keypoints, encoder features, downscaled source);
- `detect_keypoints(frame)`: once per driving frame;
- `animate(source_state, kp_driving)`: once per driving frame (dense motion, warp, decoder).

Images at this boundary are uint8 RGB, HxWx3, already cropped to the model's size (engine.image_size).
Keypoints are numpy float32: value (K, 2) in [-1, 1], jacobian (K, 2, 2) or None.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Keypoints:
    value: np.ndarray  # (K, 2) float32, x and y in [-1, 1]
    jacobian: np.ndarray | None = None  # (K, 2, 2) float32


@dataclass
class SourceState:
    """Everything cached for one avatar. `tensors` is engine-specific (torch tensors, numpy arrays)."""

    image: np.ndarray  # uint8 RGB at model size
    keypoints: Keypoints
    tensors: dict[str, Any] = field(default_factory=dict)


@dataclass
class Motion:
    """Where the animated crop comes from, per pixel, as the model computed it (its warped-source blend):
    enough to redo the warp on the avatar's full-resolution picture (reenact_app/full_resolution.py)."""

    # (h, w, 2) float32: x, y offset of the sampling point from each pixel, in [-1, 1] crop units
    # (align_corners=True), at the dense-motion resolution (a quarter of the model size). Zero at rest.
    displacement: np.ndarray
    # (H, W) float32 in [0, 1]: how much of the output is the warped avatar (1 wherever it is visible
    # as it was; 0 where the decoder's output stands, and everywhere for models without the blend).
    visibility: np.ndarray


@dataclass
class Animation:
    """One animated crop (uint8 RGB at model size) and, where the engine provides it, its motion."""

    image: np.ndarray
    motion: Motion | None = None


def motion_from_outputs(displacement: Any, visibility: Any) -> Motion:
    """Batch-1 engine outputs (numpy or torch, any float type) -> Motion in float32 numpy."""

    def array(value) -> np.ndarray:
        if hasattr(value, "detach"):
            value = value.detach().float().cpu().numpy()
        return np.ascontiguousarray(np.asarray(value, np.float32))

    return Motion(displacement=array(displacement)[0], visibility=array(visibility)[0, 0])


class Engine(ABC):
    """An inference backend. Subclasses set `name` (e.g. "torch", "onnxruntime", "tensorrt") and `device`."""

    name: str = "base"
    device: str = "cpu"
    image_size: int = 256
    # One-line, user-facing message when the engine changed itself at run time (FallbackEngine sets
    # it after switching to a slower engine); None while nothing happened. The GUI shows it.
    notice: str | None = None
    # How the engine was chosen (select.Selection), set by create_engine.
    selection: Any = None

    @abstractmethod
    def encode_source(self, image: np.ndarray) -> SourceState: ...

    @abstractmethod
    def detect_keypoints(self, image: np.ndarray) -> Keypoints: ...

    @abstractmethod
    def animate(self, source: SourceState, kp_driving: Keypoints) -> np.ndarray:
        """Returns the animated avatar, uint8 RGB HxWx3 at model size."""

    def animate_with_motion(self, source: SourceState, kp_driving: Keypoints) -> Animation:
        """`animate` plus the motion behind it. Engines that can't return it give motion None (the app
        then pastes the upscaled crop back, as without full resolution)."""
        return Animation(self.animate(source, kp_driving))

    def describe(self) -> str:
        return f"{self.name} ({self.device})"

    def close(self) -> None:
        """Release device memory / sessions. Safe to call twice."""
