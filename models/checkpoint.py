"""Build, save and load models safely.

Formats:
- the project's own: one safetensors file, tensors prefixed `kp_detector.` / `generator.`, the
  ModelConfig as JSON in the metadata (no pickle anywhere);
- upstream FOMM `.pth.tar` (dict with `kp_detector` and `generator` state dicts) plus its YAML config,
  read with `torch.load(weights_only=True)` so a malicious pickle can't run code.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.config import ModelConfig, from_upstream_yaml, preset
from reenact_common.errors import CheckpointError, ConfigError
from models.generator import OcclusionAwareGenerator
from models.keypoint_detector import KPDetector
from reenact_common.paths import default_weights

log = logging.getLogger(__name__)

FORMAT_NAME = "reenact-checkpoint"
FORMAT_VERSION = "1"
PARTS = ("kp_detector", "generator")


@dataclass
class ReenactModel:
    """The two networks and the config that built them."""

    kp_detector: KPDetector
    generator: OcclusionAwareGenerator
    config: ModelConfig
    metadata: dict[str, str] | None = None

    def eval(self) -> "ReenactModel":
        self.kp_detector.eval()
        self.generator.eval()
        return self

    def to(self, *args: Any, **kwargs: Any) -> "ReenactModel":
        self.kp_detector.to(*args, **kwargs)
        self.generator.to(*args, **kwargs)
        return self

    def state_dicts(self) -> dict[str, dict[str, torch.Tensor]]:
        return {"kp_detector": self.kp_detector.state_dict(), "generator": self.generator.state_dict()}

    def parameter_count(self) -> dict[str, int]:
        return {name: sum(p.numel() for p in getattr(self, name).parameters()) for name in PARTS}

    def set_warped_source_blend(self, on: bool) -> "ReenactModel":
        """Switch the warped-source blend (models/source_blend.py) on or off, in place. It has no weights,
        so any trained checkpoint takes it; the config (saved with the file) follows."""
        generator = dataclasses.replace(self.config.generator, warped_source_blend=bool(on))
        self.config = self.config.replace(generator=generator)
        self.generator.warped_source_blend = bool(on)
        return self


def build_model(config: ModelConfig | str) -> ReenactModel:
    """Fresh, randomly initialised networks for a config or preset name."""
    if isinstance(config, str):
        config = preset(config)
    return ReenactModel(KPDetector(config), OcclusionAwareGenerator(config), config)


def save_checkpoint(model: ReenactModel, path: str | Path, extra_metadata: dict[str, str] | None = None) -> Path:
    """Write the project format (safetensors + config metadata).

    Serialised in memory and written with open(): safetensors' save_file creates files mode 0600
    whatever the umask, so a checkpoint trained on a shared machine was unreadable to the group."""
    from safetensors.torch import save

    path = Path(path)
    tensors = {
        f"{part}.{key}": value.detach().cpu().contiguous()
        for part, state in model.state_dicts().items()
        for key, value in state.items()
    }
    # The format keys and the config always describe this model: extra metadata can't override them.
    metadata = {**(extra_metadata or {}), "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "config": json.dumps(model.config.to_dict())}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(save(tensors, metadata=metadata))
        tmp.replace(path)
    except OSError as exc:
        raise CheckpointError(f"can't write checkpoint {path}: {exc.strerror or exc}") from exc
    return path


def load_checkpoint(path: str | Path | None = None, config: ModelConfig | str | Path | None = None) -> ReenactModel:
    """Load a model in eval mode.

    path=None loads the bundled default weights. `config` is needed for upstream `.pth.tar` files
    (an upstream YAML path, a preset name or a ModelConfig); the project's safetensors carry their own.
    """
    if path is None:
        path = default_weights()
        if not path.exists():
            raise CheckpointError(
                f"no bundled weights at {path}: train them (`reenact train`) or pass a checkpoint path"
            )
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if _is_safetensors(path):
        states, stored_config, metadata = _read_safetensors(path)
        model_config = _resolve_config(config) if config is not None else stored_config
    else:
        states = _read_upstream(path)
        if config is None:
            raise CheckpointError(
                f"{path.name} is an upstream FOMM checkpoint: pass its YAML config too "
                "(e.g. `--config vox-256.yaml`, with model_params as in the FOMM repository)"
            )
        model_config = _resolve_config(config)
        metadata = {"source": str(path)}
    _check_fits(model_config, states, path)  # before allocating anything the config asks for
    model = build_model(model_config)
    for part in PARTS:
        _load_strict(getattr(model, part), states[part], part, path)
    model.metadata = metadata
    return model.eval()


def convert_checkpoint(
    source: str | Path, output: str | Path, config: ModelConfig | str | Path | None = None,
    warped_source_blend: bool | None = None,
) -> Path:
    """Upstream FOMM checkpoint (or project file) -> project safetensors; a project file's own metadata
    (training step, ...) is kept. `warped_source_blend` switches that stage in the written config."""
    model = load_checkpoint(source, config)
    if warped_source_blend is not None:
        model.set_warped_source_blend(warped_source_blend)
    kept = {k: v for k, v in (model.metadata or {}).items() if k != "source"}  # "source": set by the loader
    return save_checkpoint(model, output, {**kept, "converted_from": Path(source).name})


def _resolve_config(config: ModelConfig | str | Path) -> ModelConfig:
    if isinstance(config, ModelConfig):
        return config
    text = str(config)
    if text.endswith((".yaml", ".yml")) or Path(text).is_file():
        return from_upstream_yaml(text)
    return preset(text)


def _is_safetensors(path: Path) -> bool:
    """safetensors begin with an 8-byte little-endian header length followed by '{'."""
    with path.open("rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _read_safetensors(path: Path) -> tuple[dict, ModelConfig, dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # safetensors raises several types for malformed files
        raise CheckpointError(f"{path.name} is not a valid safetensors file ({exc}); re-export or re-download it") from None
    if metadata.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path.name} is a safetensors file but not a Reenact checkpoint (no config metadata)")
    try:
        model_config = ModelConfig.from_dict(json.loads(metadata["config"]))
    except (KeyError, ValueError, RecursionError, ConfigError) as exc:  # JSONDecodeError is a ValueError
        raise CheckpointError(f"{path.name}: stored model config is unreadable: {exc}") from None
    states: dict[str, dict[str, torch.Tensor]] = {part: {} for part in PARTS}
    for key, value in tensors.items():
        part, _, name = key.partition(".")
        if part not in states:
            raise CheckpointError(f"{path.name}: unexpected tensor {key!r} (expected kp_detector.* or generator.*)")
        states[part][name] = value
    return states, model_config, metadata


def _read_upstream(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    try:
        raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(
                f"{path.name} contains pickled objects other than tensors; refusing to unpickle it "
                "(it could run code). Convert it on a trusted machine or use a safetensors file."
            ) from None
        raise CheckpointError(f"{path.name} is not a readable checkpoint ({reason})") from None
    if not isinstance(raw, dict) or not all(isinstance(raw.get(part), dict) for part in PARTS):
        raise CheckpointError(
            f"{path.name}: expected a dict with 'kp_detector' and 'generator' state dicts (FOMM checkpoint layout)"
        )
    for part in PARTS:
        odd = [repr(k) for k, v in raw[part].items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
        if odd:
            raise CheckpointError(f"{path.name}: {part} holds entries that are not named tensors ({', '.join(odd[:5])})")
    return {part: raw[part] for part in PARTS}


def _check_fits(model_config: ModelConfig, states: dict, path: Path) -> None:
    """Build the networks on the meta device (no memory) and compare their shapes with the file's
    tensors, so a forged config (huge or negative widths) can't allocate gigabytes or crash torch."""
    try:
        with torch.device("meta"):
            skeleton = build_model(model_config)
    except Exception as exc:  # negative sizes, zero channels...: torch raises several types
        raise CheckpointError(
            f"{path.name}: its model config can't be built ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "the file is damaged or was not written by Reenact"
        ) from None
    for part in PARTS:
        _check_shapes(getattr(skeleton, part).state_dict(), states[part], part, path)


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], part: str, path: Path) -> None:
    _check_shapes(module.state_dict(), state, part, path)
    for key, value in state.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{path.name}: {part}.{key} contains NaN or Inf values; the file is damaged")
    module.load_state_dict(state, strict=True)


def _check_shapes(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], part: str, path: Path) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mis_shaped = sorted(
        f"{key}: file {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in set(expected) & set(state)
        if tuple(state[key].shape) != tuple(expected[key].shape)
    )
    if missing or unexpected or mis_shaped:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mis_shaped)):
            if items:
                shown = ", ".join(items[:8]) + (f" (+{len(items) - 8} more)" if len(items) > 8 else "")
                parts.append(f"{len(items)} {label}: {shown}")
        raise CheckpointError(
            f"{path.name} does not fit the {part} architecture of this config: " + "; ".join(parts)
            + ". Check that the config (preset or YAML) matches the checkpoint."
        )
