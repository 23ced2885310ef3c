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

    def describe(self) -> str:
        return f"{self.name} ({self.device})"

    def close(self) -> None:
        """Release device memory / sessions. Safe to call twice."""
