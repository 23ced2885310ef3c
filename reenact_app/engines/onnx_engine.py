"""ONNX Runtime engine: the three exported graphs (see export/onnx_export.py) behind the Engine API.

CPU tuning (measured in docs/performance.md): full graph optimisation (conv+BN+ReLU fusion, NCHWc
layouts), intra-op threads = the cores we may use, one inter-op thread (the graphs are sequential),
memory arena on (per-frame allocations are identical, the arena reuses them), no thread spinning
(a desktop app shares its cores). On CUDA the avatar state
stays on the GPU as OrtValues and runs use IO binding, so only keypoints cross the bus per frame.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models import ReenactModel
from reenact_app.engines.base import Animation, Engine, Keypoints, SourceState, motion_from_outputs
from reenact_common.errors import EngineError

log = logging.getLogger(__name__)

OPT_LEVELS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class OrtOptions:
    """Session settings. intra_op_threads=0 lets the engine use every core this process may run on."""

    device: str = "cpu"  # "cpu" or "cuda"
    intra_op_threads: int = 0
    # The keypoint graph's own intra-op threads (0: as intra_op_threads). The pipelined driving loop
    # runs it beside `animate` (docs/performance.md, "paper-rt end to end on 2 cores").
    keypoint_threads: int = 0
    inter_op_threads: int = 1
    graph_optimization: str = "all"
    cpu_mem_arena: bool = True
    # Worker threads spinning while they wait for work gives the lowest latency on idle cores, but on a
    # busy CPU (the live pipeline's capture/tracker/GUI threads, a browser, a call app) the spinning
    # steals the cores: measured 1.3-2.6x slower per frame under load (docs/performance.md). Off.
    allow_spinning: bool = False
    quantized: bool = False  # use the int8 animate graph of the export folder (export/quantize.py)
    cuda_device_id: int = 0


def default_cache_dir() -> Path:
    """Where auto-exported graphs and TensorRT engines live: $REENACT_CACHE or ~/.cache/reenact."""
    override = os.environ.get("REENACT_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "reenact"


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def image_to_array(image: np.ndarray) -> np.ndarray:
    """uint8 RGB HxWx3 -> float32 (1, 3, H, W) in [0, 1]."""
    return (np.ascontiguousarray(image.transpose(2, 0, 1))[None].astype(np.float32) * np.float32(1 / 255))


def array_to_image(array: np.ndarray) -> np.ndarray:
    """float (1, 3, H, W) in [0, 1] -> uint8 RGB HxWx3 (same rounding as the PyTorch engine)."""
    return np.round(np.clip(array[0], 0.0, 1.0) * 255.0).astype(np.uint8).transpose(1, 2, 0).copy()


def export_folder(model: ReenactModel, cache_dir: Path | None = None) -> Path:
    """The cache key: where this exact model's graphs live (keyed by its weight hash)."""
    from export.onnx_export import model_hash

    return (cache_dir or default_cache_dir()) / "onnx" / model_hash(model)


def has_export(model: ReenactModel, cache_dir: Path | None = None) -> bool:
    """True when this model's graphs are already in the cache (ensure_export would not export)."""
    from export.onnx_export import read_manifest

    try:
        read_manifest(export_folder(model, cache_dir))
    except Exception:  # noqa: BLE001 - any unreadable or missing export means: not there
        return False
    return True


def ensure_export(model: ReenactModel, cache_dir: Path | None = None, quantized: bool = False) -> Path:
    """Export folder for this exact model (see export_folder), exporting on first use."""
    from export.onnx_export import export_onnx, read_manifest

    folder = export_folder(model, cache_dir)
    try:
        manifest = read_manifest(folder)
    except Exception:
        log.info("exporting the model to ONNX once (cached in %s)", folder)
        manifest = export_onnx(model, folder)
    if quantized and "animate_int8" not in manifest.files:
        from export.quantize import quantize_export

        quantize_export(folder)
    return folder


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

    def __init__(self, export_dir: str | Path, options: OrtOptions | None = None):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise EngineError("onnxruntime is not installed: `pip install onnxruntime`") from exc
        from export.onnx_export import read_manifest

        self.options = options or OrtOptions()
        self.device = self.options.device
        self._ort = ort
        self.manifest = read_manifest(export_dir)
        self.image_size = self.manifest.image_size
        self.jacobian = self.manifest.jacobian
        providers = self._providers()
        files = dict(self.manifest.files)
        if self.options.quantized:
            for part in ("animate",):
                key = f"{part}_int8"
                if key not in files:
                    raise EngineError(f"{export_dir} has no int8 graphs: run `reenact export --format onnx --int8`")
                files[part] = files[key]
        self.sessions = {
            part: self._session(Path(export_dir) / files[part], providers, self._threads(part))
            for part in ("kp_detector", "source_encoder", "animate")
        }
        active = self.sessions["animate"].get_providers()
        if self.device == "cuda" and "CUDAExecutionProvider" not in active:
            raise EngineError(f"ONNX Runtime did not enable CUDA (active providers: {active})")
        log.info("ONNX Runtime %s, providers %s, %s", ort.__version__, active, self.options)

    def _providers(self) -> list:
        if self.device == "cuda":
            available = self._ort.get_available_providers()
            if "CUDAExecutionProvider" not in available:
                raise EngineError(
                    "ONNX Runtime has no CUDA provider (install onnxruntime-gpu with a matching CUDA); "
                    f"available: {available}"
                )
            return [("CUDAExecutionProvider", {"device_id": self.options.cuda_device_id}), "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    def _threads(self, part: str) -> int:
        if part == "kp_detector" and self.options.keypoint_threads:
            return self.options.keypoint_threads
        return self.options.intra_op_threads or available_cores()

    def _session(self, path: Path, providers: list, threads: int):
        ort = self._ort
        so = ort.SessionOptions()
        level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        if self.options.graph_optimization not in level:
            raise EngineError(f"graph_optimization must be one of {OPT_LEVELS}")
        so.graph_optimization_level = level[self.options.graph_optimization]
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = self.options.inter_op_threads
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.enable_cpu_mem_arena = self.options.cpu_mem_arena
        so.log_severity_level = 3
        if not self.options.allow_spinning:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            return ort.InferenceSession(str(path), so, providers=providers)
        except Exception as exc:
            raise EngineError(f"ONNX Runtime can't load {path.name}: {exc}") from exc

    def describe(self) -> str:
        precision = "int8" if self.options.quantized else "fp32"
        return f"ONNX Runtime {self.device} {precision}"

    # -- the three calls ---------------------------------------------------------------------------
    def _keypoints(self, outputs: list[np.ndarray]) -> Keypoints:
        return Keypoints(
            value=outputs[0][0].astype(np.float32),
            jacobian=outputs[1][0].astype(np.float32) if self.jacobian else None,
        )

    def detect_keypoints(self, image: np.ndarray) -> Keypoints:
        return self._keypoints(self.sessions["kp_detector"].run(None, {"image": image_to_array(image)}))

    def encode_source(self, image: np.ndarray) -> SourceState:
        from export.onnx_export import avatar_feed

        kp_outputs, tensors = avatar_feed(self.sessions, image_to_array(image), self.jacobian,
                                          self.manifest.uses_source_image)
        keypoints = self._keypoints(kp_outputs)
        if self.device == "cuda":
            # Keep the avatar state on the GPU: per frame only the driving keypoints are uploaded.
            tensors = {
                key: self._ort.OrtValue.ortvalue_from_numpy(value, "cuda", self.options.cuda_device_id)
                for key, value in tensors.items()
            }
        return SourceState(image=image, keypoints=keypoints, tensors=tensors)

    def _kp_feed(self, kp: Keypoints, prefix: str) -> dict[str, np.ndarray]:
        feed = {f"{prefix}_value": np.ascontiguousarray(kp.value[None], dtype=np.float32)}
        if self.jacobian:
            if kp.jacobian is None:
                raise EngineError("this model needs keypoint jacobians but none were given")
            feed[f"{prefix}_jacobian"] = np.ascontiguousarray(kp.jacobian[None], dtype=np.float32)
        return feed

    def _run_animate(self, source: SourceState, kp_driving: Keypoints, outputs: list[str]) -> list[np.ndarray]:
        session = self.sessions["animate"]
        driving = self._kp_feed(kp_driving, "kp_driving")
        if self.device != "cuda":
            return session.run(outputs, {**source.tensors, **driving})
        binding = session.io_binding()
        for key, value in source.tensors.items():
            binding.bind_ortvalue_input(key, value)
        for key, value in driving.items():
            binding.bind_cpu_input(key, value)
        for name in outputs:
            binding.bind_output(name, "cpu")
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def animate(self, source: SourceState, kp_driving: Keypoints) -> np.ndarray:
        return array_to_image(self._run_animate(source, kp_driving, ["prediction"])[0])

    def animate_with_motion(self, source: SourceState, kp_driving: Keypoints) -> Animation:
        from export.onnx_export import ANIMATE_OUTPUTS

        available = {output.name for output in self.sessions["animate"].get_outputs()}
        if not available.issuperset(ANIMATE_OUTPUTS):  # an export folder from before the motion outputs
            return Animation(self.animate(source, kp_driving))
        prediction, displacement, visibility = self._run_animate(source, kp_driving, list(ANIMATE_OUTPUTS))
        return Animation(array_to_image(prediction), motion_from_outputs(displacement, visibility))

    def close(self) -> None:
        self.sessions = {}

