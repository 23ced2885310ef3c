"""TensorRT engines through torch-tensorrt (dynamo IR, fp16, static shapes), cached on disk.

Written to the documented torch-tensorrt API:
    torch_tensorrt.compile(module, ir="dynamo", inputs=[torch_tensorrt.Input(shape, dtype=torch.half)],
                           enabled_precisions={torch.half})
    torch_tensorrt.save(trt_module, "part.ep", inputs=example_inputs)   # newer releases: arg_inputs=
    torch.export.load("part.ep").module()

A TensorRT engine is only valid for the GPU model and library versions that built it, so the cache key
is sha256(model hash, GPU name, compute capability, torch / torch-tensorrt / tensorrt versions,
precision, image size). Only the per-frame parts (keypoint detector, animate) are compiled: the source
encoder runs once per avatar, in PyTorch fp16, so a slow TensorRT build is not paid for it.

NOT YET RUN ON REAL HARDWARE: no GPU and no TensorRT were available while this was written; selection,
cache keying and fallback are unit-tested with fakes (tests/test_engines.py). See docs/engines.md.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from models import ReenactModel
from reenact_common.errors import ReenactError

log = logging.getLogger(__name__)

TRT_PARTS = ("kp_detector", "animate")


class TensorRTUnavailable(ReenactError):
    """torch-tensorrt, TensorRT or a CUDA GPU is missing."""


def tensorrt_status() -> tuple[bool, str]:
    """(usable, reason): checks torch-tensorrt importability and a CUDA device, without building anything."""
    if importlib.util.find_spec("torch_tensorrt") is None:
        return False, "torch-tensorrt is not installed (`pip install torch-tensorrt` on an NVIDIA machine)"
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA GPU visible to PyTorch"
    try:
        importlib.import_module("torch_tensorrt")
    except Exception as exc:  # broken installs raise ImportError, OSError (missing libnvinfer), ...
        return False, f"torch-tensorrt failed to import: {exc}"
    return True, "available"


@dataclass(frozen=True)
class CacheKey:
    model_hash: str
    gpu_name: str
    compute_capability: str
    torch_version: str
    torch_tensorrt_version: str
    tensorrt_version: str
    precision: str
    image_size: int

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:20]


def _version(module_name: str) -> str:
    try:
        return str(importlib.import_module(module_name).__version__)
    except Exception:
        return "missing"


def cache_key(model_hash: str, image_size: int, precision: str = "fp16", device_index: int = 0) -> CacheKey:
    """Everything a serialized engine depends on; any change means a rebuild, never a stale engine."""
    import torch

    props = torch.cuda.get_device_properties(device_index)
    return CacheKey(
        model_hash=model_hash,
        gpu_name=str(props.name),
        compute_capability=f"{props.major}.{props.minor}",
        torch_version=torch.__version__,
        torch_tensorrt_version=_version("torch_tensorrt"),
        tensorrt_version=_version("tensorrt"),
        precision=precision,
        image_size=image_size,
    )


def engine_dir(cache_root: Path, key: CacheKey) -> Path:
    return Path(cache_root) / "tensorrt" / key.digest()


def _save(torch_tensorrt, module, path: Path, inputs: list) -> None:
    """torch_tensorrt.save renamed `inputs` to `arg_inputs` in newer releases: support both."""
    params = inspect.signature(torch_tensorrt.save).parameters
    keyword = "arg_inputs" if "arg_inputs" in params else "inputs"
    torch_tensorrt.save(module, str(path), **{keyword: inputs})


def build_or_load(model: ReenactModel, cache_root: Path, device_index: int = 0) -> dict:
    """Compiled per-frame parts {"kp_detector": module, "animate": module}, from the cache when possible."""
    ok, reason = tensorrt_status()
    if not ok:
        raise TensorRTUnavailable(reason)
    import torch
    import torch_tensorrt

    from export.onnx_export import example_inputs, model_hash, part_modules

    key = cache_key(model_hash(model), model.config.image_size, "fp16", device_index)
    folder = engine_dir(cache_root, key)
    device = torch.device("cuda", device_index)
    compiled = {}
    examples = None
    for part in TRT_PARTS:
        path = folder / f"{part}.ep"
        if path.is_file():
            try:
                compiled[part] = torch.export.load(str(path)).module()
                log.info("TensorRT %s loaded from cache %s", part, path)
                continue
            except Exception as exc:
                log.warning("cached TensorRT engine %s is unusable (%s): rebuilding", path, exc)
        if examples is None:
            model.to("cpu", torch.float32)
            examples = {k: [t.to(device, torch.half) for t in v] for k, v in example_inputs(model).items()}
            model.to(device, torch.half)
        module = part_modules(model)[part].to(device, torch.half).eval()
        inputs = [torch_tensorrt.Input(tuple(t.shape), dtype=torch.half) for t in examples[part]]
        log.info("building TensorRT fp16 engine for %s (one-off, can take minutes)", part)
        with torch.no_grad():
            trt_module = torch_tensorrt.compile(module, ir="dynamo", inputs=inputs, enabled_precisions={torch.half})
        folder.mkdir(parents=True, exist_ok=True)
        _save(torch_tensorrt, trt_module, path, examples[part])
        (folder / "key.json").write_text(json.dumps(asdict(key), indent=2))
        compiled[part] = trt_module
    return compiled
