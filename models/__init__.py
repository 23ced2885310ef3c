"""Motion models: the First Order Motion Model and the paper's attention + multi-scale occlusion variant.

Public API (stable): `load_checkpoint`, `save_checkpoint`, `build_model`, `normalize_kp`, `ModelConfig`,
`preset`, `PRESETS`.
"""

from models.checkpoint import ReenactModel, build_model, convert_checkpoint, load_checkpoint, save_checkpoint
from models.config import PRESETS, ModelConfig, from_upstream_params, from_upstream_yaml, preset
from reenact_common.errors import CheckpointError, ConfigError, ReenactError
from models.motion import movement_scale, normalize_kp

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ModelConfig",
    "PRESETS",
    "ReenactError",
    "ReenactModel",
    "build_model",
    "convert_checkpoint",
    "from_upstream_params",
    "from_upstream_yaml",
    "load_checkpoint",
    "movement_scale",
    "normalize_kp",
    "preset",
    "save_checkpoint",
]
