"""CUDA-graph engine: the per-frame work replayed from captured CUDA graphs over static buffers.

Why: at 256 px and batch 1 the PyTorch CUDA engine is launch-bound (the H100 waits for Python and
hundreds of kernel launches per frame; docs/performance.md). A captured graph launches all of a
call's kernels at once. What that needs, and what this engine does:
- fixed shapes: one model size, batch 1, so each call is captured once;
- static buffers: the driving frame (uint8, HxWx3), the driving keypoints and the avatar's cached
  tensors live at fixed device addresses; a call copies its input into them and replays;
- the avatar: `encode_source` runs eagerly once per avatar; its tensors are copied into the static
  avatar buffers when a frame is animated with a different avatar than the last (one device copy,
  no re-capture: every avatar has the same shapes);
- fp16 (or bf16) with channels-last convolutions; uint8 <-> float conversion inside the graph, so
  each call moves one small host->device copy in and one device->host copy out, then synchronises once.
  The motion behind the image (for full-resolution output) stays on the device unless
  `animate_with_motion` asks for it: then two more copies ride the same synchronisation.

`StaticGraph` has a second mode, "eager", which runs the same function over the same static buffers
without capturing: the CPU path the tests use to check this engine's buffer logic against the PyTorch
engine, and a debugging aid on CUDA. A third, "compile", wraps the function in
`torch.compile(mode="reduce-overhead")` (PyTorch's own CUDA graphs, slower first frames).
"""

from __future__ import annotations

import copy
import itertools
import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from models import ReenactModel
from reenact_app.engines.base import Animation, Engine, Keypoints, SourceState, motion_from_outputs
from reenact_common.errors import EngineError

log = logging.getLogger(__name__)

MODES = ("cudagraph", "compile", "eager")
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
AVATAR_KEY = "_graph_avatar"
MOTION_KEYS = ("displacement", "visibility")  # generator.animate's motion outputs (full-resolution output)  # SourceState.tensors entry: which avatar these tensors are (a counter)

Buffers = dict[str, torch.Tensor]


@dataclass(frozen=True)
class GraphOptions:
    """How the engine runs. The defaults are the GPU main path; tests use device="cpu", mode="eager"."""

    device: str = "cuda:0"
    dtype: str = "float16"  # "float16", "bfloat16" or "float32"
    channels_last: bool = True
    mode: str = "cudagraph"  # see MODES
    warmup: int = 3  # eager runs before capture (cuDNN picks its algorithms, allocator settles)


class StaticGraph:
    """`fn(inputs) -> outputs` over fixed buffers: write into `inputs` in place, call `run()`, read `outputs`.

    "cudagraph": warmed up on a side stream, then captured once; `run()` replays it and the outputs are
    the tensors the capture allocated. "eager"/"compile": `run()` calls `fn` and copies its results into
    the same output buffers, so callers see one behaviour in every mode.
    """

    def __init__(self, fn: Callable[[Buffers], Buffers], inputs: Buffers, mode: str = "cudagraph", warmup: int = 3):
        if mode not in MODES:
            raise EngineError(f"graph mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.inputs, self.mode = inputs, mode
        self._graph: torch.cuda.CUDAGraph | None = None
        self._fn = torch.compile(fn, mode="reduce-overhead") if mode == "compile" else fn
        if mode == "cudagraph":
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(max(1, warmup)):
                    fn(inputs)
            torch.cuda.current_stream().wait_stream(side)
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph):
                self.outputs = fn(inputs)
        else:
            for _ in range(max(0, warmup - 1)):
                self._fn(inputs)
            self.outputs = {key: value.clone() for key, value in self._fn(inputs).items()}

    def run(self) -> Buffers:
        if self._graph is not None:
            self._graph.replay()
        else:
            for key, value in self._fn(self.inputs).items():
                self.outputs[key].copy_(value)
        return self.outputs


class CudaGraphEngine(Engine):
    """Keypoints and animate of one model, each a `StaticGraph`; see the module docstring."""

    name = "torch-cudagraph"

    def __init__(self, model: ReenactModel, options: GraphOptions | None = None):
        self.options = options = options or GraphOptions()
        if options.dtype not in DTYPES:
            raise EngineError(f"dtype must be one of {', '.join(DTYPES)}, not {options.dtype!r}")
        self.device = options.device
        self._device = torch.device(options.device)
        if options.mode != "eager" and self._device.type != "cuda":
            raise EngineError(f"graph mode {options.mode!r} needs a CUDA device; use mode='eager' on {options.device}")
        self._dtype = DTYPES[options.dtype]
        self._format = torch.channels_last if options.channels_last else torch.contiguous_format
        self._cuda = self._device.type == "cuda"
        if self._cuda:
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN time its algorithms once
        # A copy: the caller's CPU fp32 model stays usable (fallback engines export it).
        self.model = copy.deepcopy(model).eval().to(self._device, self._dtype)
        self.model.kp_detector.to(memory_format=self._format)
        self.model.generator.to(memory_format=self._format)
        self.config = model.config
        self.image_size = size = model.config.image_size
        self.num_kp = model.config.num_kp
        self.jacobian = model.config.estimate_jacobian
        self._avatar_ids = itertools.count(1)
        self._loaded_avatar = 0
        with torch.no_grad():
            self._frame_in = torch.zeros((1, size, size, 3), dtype=torch.uint8, device=self._device)
            self._kp_graph = StaticGraph(self._keypoint_fn, {"frame": self._frame_in}, options.mode, options.warmup)
            # Capture animate against a dummy avatar: real avatars are copied into the same buffers.
            dummy = self._encode(torch.zeros((1, size, size, 3), dtype=torch.uint8, device=self._device))
            self._avatar = {key: value.clone() for key, value in dummy.items()}
            self._kp_in = torch.zeros((1, self._kp_width()), dtype=torch.float32, device=self._device)
            self._animate_graph = StaticGraph(
                self._animate_fn, {**self._avatar, "kp_driving": self._kp_in}, options.mode, options.warmup
            )
        pin = self._cuda
        self._frame_host = torch.zeros((1, size, size, 3), dtype=torch.uint8, pin_memory=pin)
        self._kp_host_in = torch.zeros((1, self._kp_width()), dtype=torch.float32, pin_memory=pin)
        self._kp_host_out = torch.zeros((1, self._kp_width()), dtype=torch.float32, pin_memory=pin)
        self._image_host = torch.zeros((1, size, size, 3), dtype=torch.uint8, pin_memory=pin)
        self._motion_host: dict[str, torch.Tensor] | None = None  # pinned, on the first animate_with_motion

    def describe(self) -> str:
        precision = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}[self.options.dtype]
        how = {"cudagraph": "CUDA graphs", "compile": "torch.compile reduce-overhead", "eager": "static buffers, eager"}
        return f"PyTorch {self.device} {precision}, {how[self.options.mode]}"

    # -- the functions that are captured ------------------------------------------------------------
    def _kp_width(self) -> int:
        """Keypoints travel as one float32 row: K*2 values, then K*4 jacobian entries (if any)."""
        return self.num_kp * (6 if self.jacobian else 2)

    def _image(self, frame: torch.Tensor) -> torch.Tensor:
        """uint8 (1, H, W, 3) -> model dtype (1, 3, H, W) in [0, 1], in the model's memory format."""
        return (frame.permute(0, 3, 1, 2).to(self._dtype) / 255.0).contiguous(memory_format=self._format)

    def _pack(self, kp: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = [kp["value"].reshape(1, -1)]
        if self.jacobian:
            parts.append(kp["jacobian"].reshape(1, -1))
        return torch.cat(parts, dim=1).float()

    def _unpack(self, packed: torch.Tensor) -> dict[str, torch.Tensor]:
        k = self.num_kp
        out = {"value": packed[:, : 2 * k].reshape(1, k, 2).to(self._dtype)}
        if self.jacobian:
            out["jacobian"] = packed[:, 2 * k :].reshape(1, k, 2, 2).to(self._dtype)
        return out

    def _keypoint_fn(self, inputs: Buffers) -> Buffers:
        return {"packed": self._pack(self.model.kp_detector(self._image(inputs["frame"])))}

    def _animate_fn(self, inputs: Buffers) -> Buffers:
        avatar = {key: inputs[key] for key in self._avatar}
        out = self.model.generator.animate(avatar, self._unpack(inputs["kp_driving"]))
        # The same rounding as the PyTorch engine's to_image, done on the device: uint8 crosses the bus.
        image = out["prediction"].float().clamp(0, 1).mul(255).round().to(torch.uint8)
        result = {"image": image.permute(0, 2, 3, 1).contiguous()}
        for key in MOTION_KEYS:
            if key in out:
                result[key] = out[key].float().contiguous()
        return result

    def _encode(self, frame: torch.Tensor) -> Buffers:
        source = self._image(frame)
        kp = self.model.kp_detector(source)
        state = self.model.generator.encode_source(source, kp)
        return {
            key: (value.contiguous(memory_format=self._format) if value.dim() == 4 else value.contiguous())
            for key, value in state.items()
        }

    # -- host <-> device: one copy in, one copy out, one synchronisation per call --------------------
    def _upload(self, host: torch.Tensor, device: torch.Tensor, array: np.ndarray) -> None:
        host.copy_(torch.from_numpy(array))
        device.copy_(host, non_blocking=self._cuda)

    def _download(self, device: torch.Tensor, host: torch.Tensor) -> np.ndarray:
        host.copy_(device, non_blocking=self._cuda)
        if self._cuda:
            torch.cuda.current_stream(self._device).synchronize()
        return host.numpy()

    def _check_frame(self, image: np.ndarray) -> np.ndarray:
        size = self.image_size
        if image.shape != (size, size, 3) or image.dtype != np.uint8:
            raise EngineError(
                f"this engine takes uint8 RGB {size}x{size}x3 crops, got {image.dtype} {image.shape}: crop first"
            )
        return image[None]

    # -- the Engine API -----------------------------------------------------------------------------
    @torch.no_grad()
    def encode_source(self, image: np.ndarray) -> SourceState:
        self._upload(self._frame_host, self._frame_in, self._check_frame(image))
        state = self._encode(self._frame_in)
        packed = self._download(self._pack({"value": state["kp_source_value"],
                                            "jacobian": state.get("kp_source_jacobian")}), self._kp_host_out)
        tensors: dict = dict(state)
        tensors[AVATAR_KEY] = next(self._avatar_ids)
        return SourceState(image=image, keypoints=self._keypoints(packed), tensors=tensors)

    @torch.no_grad()
    def detect_keypoints(self, image: np.ndarray) -> Keypoints:
        self._upload(self._frame_host, self._frame_in, self._check_frame(image))
        return self._keypoints(self._download(self._kp_graph.run()["packed"], self._kp_host_out))

    @torch.no_grad()
    def animate(self, source: SourceState, kp_driving: Keypoints) -> np.ndarray:
        self._load_avatar(source)
        self._upload(self._kp_host_in, self._kp_in, self._kp_row(kp_driving))
        return self._download(self._animate_graph.run()["image"], self._image_host)[0].copy()

    @torch.no_grad()
    def animate_with_motion(self, source: SourceState, kp_driving: Keypoints) -> Animation:
        self._load_avatar(source)
        self._upload(self._kp_host_in, self._kp_in, self._kp_row(kp_driving))
        outputs = self._animate_graph.run()
        if not all(key in outputs for key in MOTION_KEYS):
            return Animation(self._download(outputs["image"], self._image_host)[0].copy())
        if self._motion_host is None:
            self._motion_host = {key: torch.zeros(outputs[key].shape, dtype=torch.float32, pin_memory=self._cuda)
                                 for key in MOTION_KEYS}
        for key in MOTION_KEYS:  # queued before the image's copy, so its synchronisation covers them
            self._motion_host[key].copy_(outputs[key], non_blocking=self._cuda)
        image = self._download(outputs["image"], self._image_host)[0].copy()
        motion = motion_from_outputs(*(self._motion_host[key].numpy().copy() for key in MOTION_KEYS))
        return Animation(image, motion)

    def _load_avatar(self, source: SourceState) -> None:
        avatar_id = source.tensors.get(AVATAR_KEY)
        if avatar_id is None:
            raise EngineError("this avatar was encoded by another engine: call encode_source with this one")
        if avatar_id == self._loaded_avatar:
            return
        for key, buffer in self._avatar.items():
            buffer.copy_(source.tensors[key])
        self._loaded_avatar = avatar_id

    def _kp_row(self, kp: Keypoints) -> np.ndarray:
        parts = [np.asarray(kp.value, np.float32).reshape(1, -1)]
        if self.jacobian:
            if kp.jacobian is None:
                raise EngineError("this model needs keypoint jacobians but none were given")
            parts.append(np.asarray(kp.jacobian, np.float32).reshape(1, -1))
        return np.ascontiguousarray(np.concatenate(parts, axis=1))

    def _keypoints(self, packed: np.ndarray) -> Keypoints:
        k = self.num_kp
        row = packed[0]
        return Keypoints(
            value=row[: 2 * k].reshape(k, 2).copy(),
            jacobian=row[2 * k :].reshape(k, 2, 2).copy() if self.jacobian else None,
        )

    def close(self) -> None:
        self._kp_graph = self._animate_graph = None  # type: ignore[assignment]
        if self._cuda:
            torch.cuda.empty_cache()
