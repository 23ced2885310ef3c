"""One small error hierarchy for the whole project; every message says what to do next."""


class ReenactError(Exception):
    """Base class: an expected failure with a message meant for the user."""


class CheckpointError(ReenactError):
    """A checkpoint is missing, corrupt, unsafe or does not fit the architecture."""


class ConfigError(ReenactError):
    """A model or run configuration is malformed (unknown keys, wrong types)."""


class NoFaceError(ReenactError):
    """No face was found where one is required (avatar image, driving frame)."""


class CameraError(ReenactError):
    """A camera is missing, busy, or stopped delivering frames."""


class VirtualCameraError(ReenactError):
    """The virtual camera driver is missing or the device vanished."""


class MediaError(ReenactError):
    """An image or video can't be read, or an output can't be written."""


class EngineError(ReenactError):
    """An inference engine is unavailable or failed at run time."""
