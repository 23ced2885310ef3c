"""Re-export of the project's error hierarchy (defined in `models.errors` so `models` stays standalone)."""

from models.errors import (  # noqa: F401
    CameraError,
    CheckpointError,
    ConfigError,
    EngineError,
    MediaError,
    NoFaceError,
    ReenactError,
    VirtualCameraError,
)
