"""Typed model configuration: frozen dataclasses, named presets, strict dict/YAML conversion.

FOMM and the paper's variant (Appl. Sci. 2023, 13, 4137) are one architecture; the paper's two modules
are switches in `DenseMotionConfig` (attention, multi-scale occlusion) and `GeneratorConfig`
(final kernel size), so each can be turned on alone for ablations.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_args, get_type_hints

from reenact_common.errors import ConfigError

ATTENTION_KINDS = ("none", "paper", "cbam")


@dataclass(frozen=True)
class KeypointDetectorConfig:
    block_expansion: int = 32
    max_features: int = 1024
    num_blocks: int = 5
    temperature: float = 0.1
    scale_factor: float = 0.25
    pad: int = 0
    single_jacobian_map: bool = False


@dataclass(frozen=True)
class DenseMotionConfig:
    block_expansion: int = 64
    max_features: int = 1024
    num_blocks: int = 5
    scale_factor: float = 0.25
    kp_variance: float = 0.01
    # Paper module (a): attention on the hourglass output before the mask head.
    attention: str = "none"  # "none" (FOMM), "paper" (max-pool channel attention x sigma), "cbam"
    attention_sigma: float = 2.0
    attention_reduction: int = 16
    # Paper module (b): multi-scale occlusion restoration (maps at 1x, 2x, 4x the dense-motion size).
    multiscale_occlusion: bool = False
    occlusion_channels: tuple[int, int] = (64, 32)


@dataclass(frozen=True)
class GeneratorConfig:
    block_expansion: int = 64
    max_features: int = 512
    num_down_blocks: int = 2
    num_bottleneck_blocks: int = 6
    estimate_occlusion_map: bool = True
    final_kernel_size: int = 7  # FOMM: 7; the paper's multi-scale generator uses a 1x1 final conv
    # Warped-source blend (models/source_blend.py): where the occlusion map sees the avatar, output the
    # avatar warped at full resolution instead of the decoder's (blurrier) rebuild. False: FOMM, the paper.
    warped_source_blend: bool = False


@dataclass(frozen=True)
class ModelConfig:
    num_kp: int = 10
    num_channels: int = 3
    estimate_jacobian: bool = True
    image_size: int = 256
    kp_detector: KeypointDetectorConfig = field(default_factory=KeypointDetectorConfig)
    dense_motion: DenseMotionConfig = field(default_factory=DenseMotionConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)

    def __post_init__(self) -> None:
        _check_bounds(self)
        if self.dense_motion.attention not in ATTENTION_KINDS:
            raise ConfigError(
                f"dense_motion.attention must be one of {ATTENTION_KINDS}, got {self.dense_motion.attention!r}"
            )
        if self.dense_motion.multiscale_occlusion and self.generator.num_down_blocks != 2:
            raise ConfigError("multiscale_occlusion needs generator.num_down_blocks == 2 (maps at 1x, 2x, 4x)")

    @property
    def is_paper_variant(self) -> bool:
        return self.dense_motion.attention != "none" or self.dense_motion.multiscale_occlusion

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Strict conversion: unknown keys and wrong types are errors, missing keys take defaults."""
        return dataclass_from_dict(cls, data, "model")

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


# Sane ranges for every size: a config read from a file (a checkpoint's metadata, a YAML) must not be
# able to ask for terabytes or loop for hours (num_kp = 10**12 once hung the loader building a list).
_INT_BOUNDS = {
    "num_kp": (3, 256), "num_channels": (1, 4), "image_size": (32, 4096),
    "block_expansion": (1, 4096), "max_features": (1, 16384), "num_blocks": (1, 8),
    "num_down_blocks": (1, 5), "num_bottleneck_blocks": (0, 32), "attention_reduction": (1, 1024),
    "pad": (0, 3), "final_kernel_size": (1, 15),
}


def _check_bounds(config: "ModelConfig") -> None:
    parts = {"": config, "kp_detector.": config.kp_detector, "dense_motion.": config.dense_motion,
             "generator.": config.generator}
    for prefix, part in parts.items():
        for f in fields(part):
            value = getattr(part, f.name)
            if f.name in _INT_BOUNDS:
                low, high = _INT_BOUNDS[f.name]
                if not low <= value <= high:
                    raise ConfigError(f"{prefix}{f.name} = {value} is outside the sane range [{low}, {high}]")
    for prefix, part in (("kp_detector.", config.kp_detector), ("dense_motion.", config.dense_motion)):
        if not (0.0 < part.scale_factor <= 1.0) or (part.scale_factor != 1 and round(1 / part.scale_factor) > 64):
            raise ConfigError(f"{prefix}scale_factor = {part.scale_factor} must be in (1/64, 1]")
    kp = config.kp_detector
    if not (0.0 < kp.temperature < 1e3) or not (0.0 < config.dense_motion.kp_variance < 1e3):
        raise ConfigError("kp_detector.temperature and dense_motion.kp_variance must be positive and finite")
    if not (0.0 < config.dense_motion.attention_sigma < 1e3):
        raise ConfigError("dense_motion.attention_sigma must be positive and finite")
    if not all(1 <= c <= 4096 for c in config.dense_motion.occlusion_channels):
        raise ConfigError("dense_motion.occlusion_channels must be in [1, 4096]")
    if config.generator.final_kernel_size % 2 == 0:
        raise ConfigError("generator.final_kernel_size must be odd")


def dataclass_from_dict(cls: type, data: Any, where: str) -> Any:
    """Strict dict -> (nested) dataclass: unknown keys and wrong types are ConfigErrors naming the key;
    missing keys keep their defaults. Shared by the model and training configs."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known, key=repr)  # YAML keys may be ints: don't compare int with str
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    values: dict[str, Any] = {}
    for name, value in data.items():
        hint = hints[name]
        if is_dataclass(hint):
            values[name] = dataclass_from_dict(hint, value, f"{where}.{name}")
        else:
            values[name] = _coerce(value, hint, f"{where}.{name}")
    try:
        return cls(**values)
    except TypeError as exc:  # pragma: no cover - guarded by the checks above
        raise ConfigError(f"{where}: {exc}") from exc


def _coerce(value: Any, hint: Any, where: str) -> Any:
    if getattr(hint, "__origin__", None) is tuple:
        args = [a for a in get_args(hint) if a is not Ellipsis]
        if isinstance(value, (list, tuple)) and (len(args) == 1 or len(args) == len(value)):
            return tuple(_coerce(v, args[0] if len(args) == 1 else args[i], where) for i, v in enumerate(value))
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is dict:
        if isinstance(value, dict):
            return value
    else:  # pragma: no cover
        return value
    raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def _paper(base: ModelConfig) -> ModelConfig:
    return dataclasses.replace(
        base,
        dense_motion=dataclasses.replace(base.dense_motion, attention="paper", multiscale_occlusion=True),
        generator=dataclasses.replace(base.generator, final_kernel_size=1),
    )


_FOMM_VOX256 = ModelConfig()

# Real-time presets for CPU: narrower widths, fewer residual blocks. Sizes are set by
# benchmarks/ (see docs/performance.md).
_RT_SMALL = ModelConfig(
    kp_detector=KeypointDetectorConfig(block_expansion=16, max_features=256, num_blocks=4),
    dense_motion=DenseMotionConfig(block_expansion=16, max_features=256, num_blocks=4, occlusion_channels=(32, 16)),
    generator=GeneratorConfig(block_expansion=16, max_features=128, num_bottleneck_blocks=2),
)

PRESETS: dict[str, ModelConfig] = {
    "fomm-vox256": _FOMM_VOX256,
    "paper-vox256": _paper(_FOMM_VOX256),
    "fomm-rt": _RT_SMALL,
    "paper-rt": _paper(_RT_SMALL),
}


def preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


def from_upstream_yaml(path: str | Path) -> ModelConfig:
    """Read an upstream FOMM config (`model_params: {common_params, kp_detector_params, generator_params}`)."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:  # a folder, no permission, a binary file
        raise ConfigError(f"can't read config {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    try:
        params = raw["model_params"]
    except (KeyError, TypeError):
        raise ConfigError(f"{path}: not an upstream FOMM config (no 'model_params' section)") from None
    return from_upstream_params(params, where=str(path))


def from_upstream_params(params: dict[str, Any], where: str = "config") -> ModelConfig:
    """Map upstream `model_params` (FOMM YAML names) onto ModelConfig."""
    try:
        common = dict(params.get("common_params", {}))
        kp = dict(params.get("kp_detector_params", {}))
        gen = dict(params.get("generator_params", {}))
        dense = dict(gen.pop("dense_motion_params", {}))
        data = {
            "num_kp": common.get("num_kp", 10),
            "num_channels": common.get("num_channels", 3),
            "estimate_jacobian": common.get("estimate_jacobian", True),
            "kp_detector": kp,
            "dense_motion": dense,
            "generator": gen,
        }
    except (AttributeError, TypeError, ValueError):
        raise ConfigError(f"{where}: model_params sections must be mappings") from None
    return ModelConfig.from_dict(data)
