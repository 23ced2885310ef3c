"""Engine selection: `create_engine(...)` builds the requested engine or the best available one.

(Initial version: PyTorch only. ONNX Runtime and TensorRT join the fallback chain in this module.)
"""

from __future__ import annotations

import logging
from pathlib import Path

from models import ReenactModel, load_checkpoint
from reenact_app.engines.base import Engine
from reenact_app.errors import EngineError

log = logging.getLogger(__name__)

ENGINE_NAMES = ("auto", "torch")


def create_engine(
    model: ReenactModel | str | Path | None = None,
    engine: str = "auto",
    config: str | Path | None = None,
) -> Engine:
    """`model` is a loaded model, a checkpoint path, or None for the bundled weights."""
    if engine not in ENGINE_NAMES:
        raise EngineError(f"unknown engine {engine!r}; choose one of {ENGINE_NAMES}")
    if not isinstance(model, ReenactModel):
        model = load_checkpoint(model, config)
    from reenact_app.engines.torch_engine import TorchEngine

    return TorchEngine(model)
