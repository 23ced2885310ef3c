"""Output sinks of the live pipeline: virtual camera, recorder, or any callable.

A sink receives every output frame (uint8 RGB) and, optionally, the driving frame. A sink that fails
(driver missing, device vanished, disk full) raises a ReenactError; the pipeline then disables that
sink, reports the message in its statistics and keeps running: a failed recording must never end the
call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import numpy as np


class Sink(ABC):
    name: str = "sink"

    def open(self) -> None:
        """Acquire the device/file. Raises a ReenactError with the fix when it can't."""

    @abstractmethod
    def write(self, image: np.ndarray, driving: np.ndarray | None = None) -> None:
        """One output frame (uint8 RGB, any size); `driving` is the raw driving frame, if any."""

    def close(self) -> None:
        """Release; safe to call twice."""


class CallbackSink(Sink):
    """Calls `fn(image, driving)` for each frame (tests, previews)."""

    def __init__(self, fn: Callable[[np.ndarray, np.ndarray | None], None], name: str = "callback"):
        self.fn = fn
        self.name = name

    def write(self, image: np.ndarray, driving: np.ndarray | None = None) -> None:
        self.fn(image, driving)


from reenact_app.sinks.recorder import Recorder, RecorderConfig  # noqa: E402
from reenact_app.sinks.virtual_camera import (  # noqa: E402
    FakeVirtualCameraBackend,
    VirtualCamera,
    VirtualCameraConfig,
    missing_driver_message,
)

__all__ = [
    "Sink",
    "CallbackSink",
    "Recorder",
    "RecorderConfig",
    "VirtualCamera",
    "VirtualCameraConfig",
    "FakeVirtualCameraBackend",
    "missing_driver_message",
]
