"""Typed training configuration (dataclasses) with strict YAML loading.

A run is fully described by one `TrainConfig`; the YAML files in configs/train/ are just its serialised
form, and command-line flags override single fields. The model is a preset name plus optional overrides
in the models.config format, so every paper module can be switched for ablations.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models.config import ModelConfig, dataclass_from_dict, preset
from reenact_common.errors import ConfigError


FACE_MESH_TAPS = 4  # face-mesh network activations the face-mesh loss compares (96/48/24/12 px)
FACE_PERCEPTUAL_ON = (5.0,) * FACE_MESH_TAPS  # per tap; a sigma-2 blur costs about 1.5 with these


@dataclass(frozen=True)
class LossWeights:
    """Weights of the reconstruction and equivariance terms (FOMM vox-256 uses perceptual 10 x 5 layers)."""

    perceptual: tuple[float, ...] = (10.0, 10.0, 10.0, 10.0, 10.0)  # VGG19 relu1_1..relu5_1, when weights given
    l1: float = 10.0  # pixel L1 per pyramid scale (used without VGG19; kept small with it)
    ssim: float = 5.0  # 1 - SSIM per pyramid scale
    gradient: float = 5.0  # L1 of image gradients per pyramid scale
    equivariance_value: float = 10.0
    equivariance_jacobian: float = 10.0
    # Face-mesh perceptual loss (training/face_features.py): L1 between mediapipe face-mesh CNN activations
    # of the prediction and the frame, one weight per tap (96/48/24/12 px); () = off. A sharpness term
    # that needs no download: the stand-in for VGG19 here. `--face-perceptual` sets FACE_PERCEPTUAL_ON.
    face_perceptual: tuple[float, ...] = ()


@dataclass(frozen=True)
class TeacherConfig:
    """mediapipe-landmark teacher: warm start, annealed keypoint term, dense-motion supervision."""

    enabled: bool = True
    landmark_indices: tuple[int, ...] = (33, 263, 105, 334, 1, 61, 291, 13, 14, 152)
    warmup_steps: int = 300  # keypoint detector only, pulled onto the landmarks
    keypoint_weight_start: float = 10.0
    keypoint_weight_end: float = 1.0
    keypoint_anneal_steps: int = 3000
    motion_weight: float = 10.0
    motion_landmarks: str = "all"  # "all" (478) or "mesh" (first 468, no irises)
    # Jacobians taught by local affine fits of each keypoint landmark's mesh neighbourhood
    # (training/local_affine.py); 0 = off. Neighbourhoods: the landmark and its nearest mesh points.
    jacobian_weight: float = 0.0
    jacobian_neighbours: int = 10


@dataclass(frozen=True)
class GanConfig:
    """Optional adversarial terms (FOMM vox-adv): patch discriminator, LSGAN, feature matching. Off by default."""

    enabled: bool = False
    scales: tuple[float, ...] = (1.0,)  # image scales seen by one discriminator each
    block_expansion: int = 32
    num_blocks: int = 4
    max_features: int = 512
    spectral_norm: bool = True
    adversarial_weight: float = 1.0  # LSGAN term of the generator (and scale of the discriminator loss)
    feature_matching: tuple[float, ...] = (10.0, 10.0, 10.0, 10.0)  # L1 per discriminator block
    # Discriminator updates over which the generator's adversarial and feature-matching terms ramp up
    # linearly from 0. Why: a discriminator added to trained weights starts random, and its large early
    # scores would otherwise steer the generator before it has learned anything (0: FOMM, full at once).
    warmup_steps: int = 0


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "paper-rt"
    model_overrides: dict = field(default_factory=dict)  # merged into the preset (models.config keys)
    image_size: int = 256  # training resolution; the exported config keeps the preset's image_size
    batch_size: int = 8  # per process
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    max_steps: int = 100_000
    lr_milestones: tuple[float, ...] = (0.6, 0.9)  # fractions of max_steps (FOMM: epochs 60 and 90 of 100)
    lr_gamma: float = 0.1
    scales: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125)
    loss: LossWeights = field(default_factory=LossWeights)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    tps_sigma_affine: float = 0.05
    tps_sigma_tps: float = 0.005
    tps_points: int = 5
    flip_probability: float = 0.5
    color_jitter: tuple[float, float, float, float] = (0.1, 0.1, 0.1, 0.1)  # brightness, contrast, saturation, hue
    max_frame_distance: int = 0  # 0: any two frames of a clip (FOMM); else at most this far apart
    # Share of pairs where another person drives the source, supervised by landmark motion only
    # (training/cross_identity.py); needs the teacher and landmarks. 0: same-clip pairs only (FOMM).
    cross_identity_share: float = 0.0
    seed: int = 0
    num_workers: int = 0
    threads: int = 0  # torch.set_num_threads; 0 leaves torch's default
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    log_every: int = 10
    checkpoint_every_s: float = 300.0
    checkpoint_every_steps: int = 0
    sample_every: int = 200
    val_every: int = 500
    val_pairs: int = 64
    vgg19_weights: str = ""
    # Initial bias of the paper's occlusion heads at 2x and 4x the dense-motion resolution (None: PyTorch's
    # default init). Those maps multiply the decoder's high-resolution features, so at ~0.5 with noisy
    # spatial structure they degrade the output until they learn; +3 (sigmoid 0.95) starts them open.
    occlusion_init_bias: float | None = None

    def model_config(self) -> ModelConfig:
        base = preset(self.preset).to_dict()
        merged = _deep_merge(base, dict(self.model_overrides))
        return ModelConfig.from_dict(merged)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        data = dict(data)
        overrides = data.pop("model_overrides", {}) or {}
        if not isinstance(overrides, dict):
            raise ConfigError("train.model_overrides must be a mapping of model config keys")
        config = dataclass_from_dict(cls, data, "train") if data else cls()
        config = dataclasses.replace(config, model_overrides=overrides)
        config.validate()
        return config

    def validate(self) -> None:
        """Cross-field checks that the dataclass types cannot express."""
        model = self.model_config()
        if self.teacher.enabled and len(self.teacher.landmark_indices) != model.num_kp:
            raise ConfigError(
                f"teacher.landmark_indices has {len(self.teacher.landmark_indices)} entries but the model has "
                f"num_kp={model.num_kp}: give one mesh landmark per keypoint"
            )
        if any(not 0 <= i < 478 for i in self.teacher.landmark_indices):
            raise ConfigError("teacher.landmark_indices must be mediapipe mesh indices in 0..477")
        if self.teacher.jacobian_weight < 0 or not 3 <= self.teacher.jacobian_neighbours <= 64:
            raise ConfigError("teacher.jacobian_weight must be >= 0 and teacher.jacobian_neighbours in 3..64 "
                              "(an affine fit needs at least 3 points)")
        if not 0.0 <= self.cross_identity_share < 1.0 or (self.cross_identity_share and not self.teacher.enabled):
            raise ConfigError("cross_identity_share must be in [0, 1) and needs the teacher (its landmark motion is "
                              "the only supervision of cross-identity pairs)")
        if len(self.loss.face_perceptual) > FACE_MESH_TAPS:
            raise ConfigError(f"loss.face_perceptual takes at most {FACE_MESH_TAPS} weights "
                              "(the face-mesh network's 96/48/24/12 px taps)")
        gan = self.gan
        if gan.enabled and (not 1 <= gan.num_blocks <= 8 or not gan.scales or any(not 0 < x <= 1 for x in gan.scales)
                            or not 1 <= gan.block_expansion <= gan.max_features <= 4096):
            raise ConfigError("gan: num_blocks must be 1..8, scales in (0, 1], 1 <= block_expansion <= max_features")
        if gan.warmup_steps < 0:
            raise ConfigError("gan.warmup_steps must be >= 0")
        if self.image_size < 32 or self.batch_size < 1 or self.max_steps < 1:
            raise ConfigError("image_size must be >= 32, batch_size and max_steps >= 1")

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def _deep_merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_train_config(path: str | Path) -> TrainConfig:
    import yaml

    path = Path(path)
    if not path.is_file():
        builtin = Path(__file__).resolve().parent.parent / "configs" / "train" / f"{path.stem}.yaml"
        if not path.suffix and builtin.is_file():
            path = builtin
        else:
            raise ConfigError(f"training config not found: {path} (see configs/train/ for examples)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return TrainConfig.from_dict(raw)


def save_train_config(config: TrainConfig, path: str | Path) -> None:
    import yaml

    Path(path).write_text(yaml.safe_dump(_plain(config.to_dict()), sort_keys=False))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
