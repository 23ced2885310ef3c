"""TensorRT engine (torch-tensorrt, fp16, static shapes) for the per-frame parts; PyTorch CUDA fp16 for
the once-per-avatar source encoder. Builds are cached on disk (export/tensorrt_build.py).

Importable without torch-tensorrt: the import happens when the engine is built.
NOT YET RUN ON REAL HARDWARE (see docs/engines.md).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from models import ReenactModel
from reenact_app.engines.base import Animation, Keypoints, SourceState, motion_from_outputs
from reenact_app.engines.torch_engine import TorchEngine, to_image, to_tensor

log = logging.getLogger(__name__)


class TensorRTEngine(TorchEngine):
    name = "tensorrt"

    def __init__(self, model: ReenactModel, cache_dir: str | Path, device_index: int = 0, builder=None):
        """`builder(model, cache_dir, device_index) -> {"kp_detector": m, "animate": m}` (tests pass fakes)."""
        from export.tensorrt_build import build_or_load

        builder = builder or build_or_load
        self.compiled = builder(model, Path(cache_dir), device_index)
        super().__init__(model, device=f"cuda:{device_index}", half=True)
        self.jacobian = model.config.estimate_jacobian

    def describe(self) -> str:
        return f"TensorRT {self.device} fp16"

    def _kp_args(self, kp: Keypoints) -> list[torch.Tensor]:
        tensors = self._kp_tensors(kp)
        return [tensors["value"], tensors["jacobian"]] if self.jacobian else [tensors["value"]]

    @torch.inference_mode()
    def detect_keypoints(self, image: np.ndarray) -> Keypoints:
        outputs = self.compiled["kp_detector"](to_tensor(image, self._device, self._dtype))
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        return Keypoints(
            value=outputs[0][0].float().cpu().numpy(),
            jacobian=outputs[1][0].float().cpu().numpy() if self.jacobian else None,
        )

    def _run_animate(self, source: SourceState, kp_driving: Keypoints) -> tuple:
        """The compiled AnimatePart's outputs: (prediction, displacement, visibility); a module compiled
        before the motion outputs returns the prediction alone, given back as (prediction,)."""
        from export.onnx_export import avatar_names

        avatar = [source.tensors[name] for name in avatar_names(self.model.generator.warped_source_blend)]
        outputs = self.compiled["animate"](*avatar, *self._kp_args(source.keypoints), *self._kp_args(kp_driving))
        return tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)

    @torch.inference_mode()
    def animate(self, source: SourceState, kp_driving: Keypoints) -> np.ndarray:
        return to_image(self._run_animate(source, kp_driving)[0])

    @torch.inference_mode()
    def animate_with_motion(self, source: SourceState, kp_driving: Keypoints) -> Animation:
        outputs = self._run_animate(source, kp_driving)
        if len(outputs) < 3:
            return Animation(to_image(outputs[0]))
        return Animation(to_image(outputs[0]), motion_from_outputs(outputs[1], outputs[2]))
