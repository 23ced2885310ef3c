"""Engine selection, fallback, TensorRT caching (with fakes: no GPU or TensorRT here) and the ONNX Runtime engine."""

from __future__ import annotations

import importlib
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from models import build_model, save_checkpoint
from reenact_app.engines import select
from reenact_app.engines.base import Engine, Keypoints, SourceState
from reenact_app.engines.select import CHAIN, EngineOptions, FallbackEngine, create_engine
from reenact_common.errors import EngineError
from reenact_app.session import AnimationSession


class FakeEngine(Engine):
    """Records calls; `fail_on` makes a method raise like a CUDA OOM would."""

    def __init__(self, label: str, fail_on: str | None = None):
        self.name, self.label, self.fail_on = label, label, fail_on
        self.calls: list[str] = []
        self.closed = False

    def describe(self) -> str:
        return f"fake {self.label}"

    def _maybe_fail(self, method: str) -> None:
        self.calls.append(method)
        if self.fail_on == method:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def encode_source(self, image):
        self._maybe_fail("encode_source")
        return SourceState(image=image, keypoints=Keypoints(np.zeros((10, 2), np.float32)),
                           tensors={"owner": self.label})

    def detect_keypoints(self, image):
        self._maybe_fail("detect_keypoints")
        return Keypoints(np.zeros((10, 2), np.float32))

    def animate(self, source, kp):
        self._maybe_fail("animate")
        assert source.tensors["owner"] == self.label, "state from another engine reached this one"
        return np.full((256, 256, 3), CHAIN.index(self.label), np.uint8)

    def close(self):
        self.closed = True


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model("paper-rt").eval()


@pytest.fixture
def fake_world(monkeypatch):
    """Every candidate available and built as a FakeEngine; tests flip availability / failures."""
    state = {"available": set(CHAIN), "broken": set(), "fail_on": {}, "built": []}

    def probe(candidate):
        return (candidate in state["available"], "available" if candidate in state["available"] else "fake: missing")

    def build(candidate, model, options):
        if candidate in state["broken"]:
            raise RuntimeError(f"fake: {candidate} failed to build")
        engine = FakeEngine(candidate, state["fail_on"].get(candidate))
        state["built"].append(engine)
        return engine

    monkeypatch.setattr(select, "_probe", probe)
    monkeypatch.setattr(select, "build_candidate", build)
    return state


IMAGE = np.zeros((256, 256, 3), np.uint8)


def test_auto_prefers_tensorrt_then_walks_the_chain(model, fake_world, caplog):
    assert create_engine(model, "auto").name == "tensorrt"
    fake_world["available"] -= {"tensorrt"}
    assert create_engine(model, "auto").name == "onnxruntime-cuda"
    fake_world["available"] -= {"onnxruntime-cuda"}
    assert create_engine(model, "auto").name == "torch-cudagraph"
    fake_world["available"] -= {"torch-cudagraph"}
    assert create_engine(model, "auto").name == "torch-cuda"
    fake_world["available"] -= {"torch-cuda"}
    with caplog.at_level(logging.DEBUG, logger="reenact_app.engines.select"):
        engine = create_engine(model, "auto")
    assert engine.name == "onnxruntime-cpu"
    skipped = [c for c, _ in engine.selection.skipped]
    assert skipped == ["tensorrt", "onnxruntime-cuda", "torch-cudagraph", "torch-cuda"]
    assert "TensorRT skipped: fake: missing" in caplog.text
    fake_world["available"] -= {"onnxruntime-cpu"}
    engine = create_engine(model, "auto")
    assert engine.name == "torch-cpu" and not isinstance(engine, FallbackEngine)  # nothing left to fall to


def test_build_failure_falls_through_with_reason(model, fake_world):
    fake_world["broken"] |= {"tensorrt", "onnxruntime-cuda"}
    engine = create_engine(model, "auto")
    assert engine.name == "torch-cudagraph"
    reasons = dict(engine.selection.skipped)
    assert "failed to start" in reasons["tensorrt"] and "failed to build" in reasons["onnxruntime-cuda"]


def test_explicit_engine_is_strict(model, fake_world):
    fake_world["available"] -= {"tensorrt"}
    with pytest.raises(EngineError, match="TensorRT: skipped"):
        create_engine(model, "tensorrt")
    fake_world["available"] -= {"torch-cuda"}
    assert create_engine(model, "torch").name == "torch-cpu"
    with pytest.raises(EngineError, match="unknown engine"):
        create_engine(model, "cuda-magic")


def test_runtime_fallback_switches_reencodes_and_notifies(model, fake_world):
    fake_world["fail_on"]["tensorrt"] = "animate"
    engine = create_engine(model, "auto")
    notices = []
    engine.listeners.append(notices.append)
    session = AnimationSession(engine)
    session.set_avatar(IMAGE)
    assert engine.notice is None
    out = session.animate(IMAGE)  # TensorRT "OOMs"; ONNX Runtime CUDA takes over transparently
    assert out[0, 0, 0] == CHAIN.index("onnxruntime-cuda")
    assert engine.name == "onnxruntime-cuda"
    assert engine.notice and "out of memory" in engine.notice and "fake onnxruntime-cuda" in engine.notice
    assert notices == [engine.notice]
    assert fake_world["built"][0].closed
    assert session.source.tensors["owner"] == "onnxruntime-cuda"  # avatar re-encoded in place
    session.animate(IMAGE)
    assert len(notices) == 1


def test_runtime_fallback_skips_unavailable_and_exhausts(model, fake_world):
    fake_world["available"] = {"torch-cuda", "torch-cpu"}
    fake_world["fail_on"] = {"torch-cuda": "detect_keypoints", "torch-cpu": "detect_keypoints"}
    engine = create_engine(model, "auto")
    with pytest.raises(EngineError, match="no fallback engine is left"):
        engine.detect_keypoints(IMAGE)
    assert [name for name, _ in engine.failures] == ["fake torch-cuda", "fake torch-cpu"]
    calls_before = [list(e.calls) for e in fake_world["built"]]
    with pytest.raises(EngineError, match="no fallback engine is left") as again:
        engine.detect_keypoints(IMAGE)  # fails fast: the closed engine is not called again
    assert again.value is engine.exhausted
    assert len(engine.failures) == 2
    assert [e.calls for e in fake_world["built"]] == calls_before


def test_no_runtime_fallback_option(model, fake_world):
    engine = create_engine(model, "auto", options=EngineOptions(runtime_fallback=False))
    assert isinstance(engine, FakeEngine)


# -- TensorRT: importable without torch_tensorrt, cache keyed and reused (fake torch_tensorrt) -------
def test_tensorrt_modules_import_without_torch_tensorrt():
    assert importlib.util.find_spec("torch_tensorrt") is None
    importlib.import_module("reenact_app.engines.tensorrt_engine")
    from export.tensorrt_build import tensorrt_status

    ok, reason = tensorrt_status()
    assert not ok and "torch-tensorrt is not installed" in reason


class _Props:
    def __init__(self, name):
        self.name, self.major, self.minor = name, 9, 0


def test_tensorrt_cache_key_depends_on_gpu_versions_and_model(monkeypatch, tmp_path):
    from export import tensorrt_build

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: _Props("NVIDIA H100"))
    monkeypatch.setattr(tensorrt_build, "_version", lambda name: {"torch_tensorrt": "2.9.0", "tensorrt": "10.13"}[name])
    base = tensorrt_build.cache_key("abc", 256)
    assert base.gpu_name == "NVIDIA H100" and base.tensorrt_version == "10.13"
    assert tensorrt_build.cache_key("abc", 256).digest() == base.digest()  # stable
    assert tensorrt_build.cache_key("abd", 256).digest() != base.digest()
    assert tensorrt_build.cache_key("abc", 512).digest() != base.digest()
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: _Props("NVIDIA L4"))
    assert tensorrt_build.cache_key("abc", 256).digest() != base.digest()
    monkeypatch.setattr(tensorrt_build, "_version", lambda name: "10.14")
    assert tensorrt_build.engine_dir(tmp_path, tensorrt_build.cache_key("abc", 256)) != tensorrt_build.engine_dir(
        tmp_path, base)


def test_tensorrt_build_then_cache_hit(monkeypatch, tmp_path, model):
    """build_or_load compiles each per-frame part once, saves it, and loads it from disk next time."""
    from export import tensorrt_build

    compiled, saved, loaded = [], [], []
    fake = types.ModuleType("torch_tensorrt")
    fake.__version__ = "0.0-fake"
    fake.Input = lambda shape, dtype: ("Input", shape, dtype)

    def compile(module, ir, inputs, enabled_precisions):
        assert ir == "dynamo" and enabled_precisions == {torch.half}
        assert all(i[2] == torch.half for i in inputs)
        compiled.append(type(module).__name__)
        return module

    def save(module, path, arg_inputs):
        saved.append(Path(path).name)
        Path(path).write_bytes(b"engine")

    fake.compile, fake.save = compile, save
    monkeypatch.setitem(sys.modules, "torch_tensorrt", fake)
    monkeypatch.setattr(tensorrt_build, "tensorrt_status", lambda: (True, "fake"))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: _Props("Fake GPU"))
    # No GPU here: build on the CPU in fp32 by making the CUDA device/half moves no-ops.
    monkeypatch.setattr(torch, "device", lambda *a, **k: torch.empty(0).device)
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: self)
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: self)
    monkeypatch.setattr(torch.export, "load", lambda path: loaded.append(Path(path).name) or
                        types.SimpleNamespace(module=lambda: "loaded-module"))

    first = tensorrt_build.build_or_load(model, tmp_path)
    assert compiled == ["KeypointPart", "AnimatePart"] and saved == ["kp_detector.ep", "animate.ep"]
    folder = next((tmp_path / "tensorrt").iterdir())
    assert (folder / "key.json").is_file() and set(first) == {"kp_detector", "animate"}
    second = tensorrt_build.build_or_load(model, tmp_path)
    assert len(compiled) == 2 and loaded == ["kp_detector.ep", "animate.ep"]
    assert second == {"kp_detector": "loaded-module", "animate": "loaded-module"}


def test_tensorrt_unavailable_raises_clear_error(model, tmp_path):
    from export.tensorrt_build import TensorRTUnavailable, build_or_load

    with pytest.raises(TensorRTUnavailable, match="torch-tensorrt"):
        build_or_load(model, tmp_path)


# -- real engines on this CPU --------------------------------------------------------------------
def test_real_auto_selection_on_cpu_is_onnxruntime(model, tmp_path, caplog):
    with caplog.at_level(logging.DEBUG):
        engine = create_engine(model, "auto", options=EngineOptions(cache_dir=tmp_path))
    assert engine.describe() == "ONNX Runtime cpu fp32"
    assert isinstance(engine, FallbackEngine) and engine.remaining == ["torch-cpu"]
    assert "TensorRT skipped" in caplog.text and "PyTorch CUDA skipped" in caplog.text
    # the export is cached by model hash: a second engine does not re-export
    files = sorted(p.name for p in (tmp_path / "onnx").iterdir())
    create_engine(model, "onnxruntime", options=EngineOptions(cache_dir=tmp_path))
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == files


def test_create_engine_from_checkpoint_path(model, tmp_path):
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    engine = create_engine(path, "torch-cpu")
    assert engine.describe() == "PyTorch cpu fp32" and engine.image_size == 256


def test_onnxruntime_matches_torch_on_real_frames(model, tmp_path, clips_dir):
    from reenact_common.video_io import centre_crop, read_frames

    frames = [centre_crop(f, 256) for f in read_frames(clips_dir / "wyhsirius+LIA/data/vox/driving2.mp4", 20)[::5]]
    ort_engine = create_engine(model, "onnxruntime-cpu", options=EngineOptions(cache_dir=tmp_path))
    torch_engine = create_engine(model, "torch-cpu")
    outs = []
    for engine in (ort_engine, torch_engine):
        session = AnimationSession(engine)
        session.set_avatar(frames[0])
        outs.append([session.animate(f) for f in frames[1:]])
    for a, b in zip(*outs):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # uint8 rounding of a <= 1e-3 float diff


def test_onnxruntime_options_validated(model, tmp_path):
    from reenact_app.engines.onnx_engine import OnnxRuntimeEngine, OrtOptions, ensure_export

    folder = ensure_export(model, tmp_path)
    with pytest.raises(EngineError, match="graph_optimization"):
        OnnxRuntimeEngine(folder, OrtOptions(graph_optimization="max"))
    with pytest.raises(EngineError, match="CUDA provider"):
        OnnxRuntimeEngine(folder, OrtOptions(device="cuda"))
    engine = OnnxRuntimeEngine(folder, OrtOptions(graph_optimization="basic", intra_op_threads=1, cpu_mem_arena=False))
    assert engine.animate(engine.encode_source(IMAGE), engine.detect_keypoints(IMAGE)).shape == (256, 256, 3)


def test_fallback_switches_once_when_two_threads_see_the_same_engine_fail(model, fake_world, monkeypatch):
    """The pipelined driving loop calls detect_keypoints and animate from two threads: when both see
    TensorRT fail at once, the engine moves to the next candidate once, not two candidates down."""
    import threading

    both_inside = threading.Barrier(2, timeout=10)

    class FailsTogether(FakeEngine):
        def _maybe_fail(self, method):
            self.calls.append(method)
            if self.label == "tensorrt" and method in ("detect_keypoints", "animate"):
                both_inside.wait()
                raise RuntimeError("CUDA error: an illegal memory access was encountered")

    def build(candidate, model, options):
        engine = FailsTogether(candidate)
        fake_world["built"].append(engine)
        return engine

    monkeypatch.setattr(select, "build_candidate", build)
    engine = create_engine(model, "auto")
    session = AnimationSession(engine)
    session.set_avatar(IMAGE)
    results: dict[str, object] = {}
    threads = [
        threading.Thread(target=lambda: results.update(kp=engine.detect_keypoints(IMAGE))),
        threading.Thread(target=lambda: results.update(image=engine.animate(session.source, Keypoints(
            np.zeros((10, 2), np.float32))))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not any(t.is_alive() for t in threads)
    assert [e.label for e in fake_world["built"]] == ["tensorrt", "onnxruntime-cuda"]
    assert engine.name == "onnxruntime-cuda" and len(engine.failures) == 1
    assert results["image"][0, 0, 0] == CHAIN.index("onnxruntime-cuda") and "kp" in results
