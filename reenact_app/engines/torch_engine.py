"""PyTorch engine: eager fp32 on CPU; fp16 (and optional torch.compile) on CUDA."""

from __future__ import annotations

import copy
import logging

import numpy as np
import torch

from models import ReenactModel
from reenact_app.engines.base import Animation, Engine, Keypoints, SourceState, motion_from_outputs

log = logging.getLogger(__name__)


def to_tensor(image: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """uint8 RGB HxWx3 -> float (1, 3, H, W) in [0, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).to(device)
    return tensor.permute(2, 0, 1).unsqueeze(0).to(dtype).div_(255.0)


def to_image(tensor: torch.Tensor) -> np.ndarray:
    """float (1, 3, H, W) in [0, 1] -> uint8 RGB HxWx3."""
    return tensor[0].float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


class TorchEngine(Engine):
    name = "torch"

    def __init__(
        self,
        model: ReenactModel,
        device: str = "cpu",
        half: bool | None = None,
        compile: bool = False,
        threads: int = 0,
    ):
        self.device = device
        self._device = torch.device(device)
        self.half = (self._device.type == "cuda") if half is None else half
        self._dtype = torch.float16 if self.half else torch.float32
        if threads:
            torch.set_num_threads(threads)
        if self._device.type != "cpu" or self.half:
            # Work on a copy: the caller's CPU fp32 model stays usable (fallback engines export it).
            model = copy.deepcopy(model)
        self.model = model.eval().to(self._device, self._dtype)
        self.config = model.config
        self.image_size = model.config.image_size
        self._kp = self.model.kp_detector
        self._animate = self.model.generator.animate
        if compile:
            self._kp = torch.compile(self._kp)
            self._animate = torch.compile(self._animate)

    def describe(self) -> str:
        precision = "fp16" if self.half else "fp32"
        return f"PyTorch {self.device} {precision}"

    def _keypoints(self, kp: dict[str, torch.Tensor]) -> Keypoints:
        jacobian = kp.get("jacobian")
        return Keypoints(
            value=kp["value"][0].float().cpu().numpy(),
            jacobian=None if jacobian is None else jacobian[0].float().cpu().numpy(),
        )

    def _kp_tensors(self, kp: Keypoints) -> dict[str, torch.Tensor]:
        out = {"value": torch.from_numpy(kp.value).to(self._device, self._dtype).unsqueeze(0)}
        if kp.jacobian is not None:
            out["jacobian"] = torch.from_numpy(kp.jacobian).to(self._device, self._dtype).unsqueeze(0)
        return out

    @torch.inference_mode()
    def encode_source(self, image: np.ndarray) -> SourceState:
        source = to_tensor(image, self._device, self._dtype)
        kp = self.model.kp_detector(source)
        state = self.model.generator.encode_source(source, kp)
        return SourceState(image=image, keypoints=self._keypoints(kp), tensors=state)

    @torch.inference_mode()
    def detect_keypoints(self, image: np.ndarray) -> Keypoints:
        return self._keypoints(self._kp(to_tensor(image, self._device, self._dtype)))

    @torch.inference_mode()
    def animate(self, source: SourceState, kp_driving: Keypoints) -> np.ndarray:
        out = self._animate(source.tensors, self._kp_tensors(kp_driving))
        return to_image(out["prediction"])

    @torch.inference_mode()
    def animate_with_motion(self, source: SourceState, kp_driving: Keypoints) -> Animation:
        out = self._animate(source.tensors, self._kp_tensors(kp_driving))
        return Animation(to_image(out["prediction"]), motion_from_outputs(out["displacement"], out["visibility"]))

    def close(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.empty_cache()
