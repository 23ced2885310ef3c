"""The CUDA-graph engine: its selection and fallback (with fakes: no GPU here), its static-buffer logic on
the CPU through the same code path ("eager" graphs) against the PyTorch engine on real frames, and, where
CUDA is present, fp16 CUDA graphs against the fp32 PyTorch engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import load_checkpoint
from reenact_app.engines import select
from reenact_app.engines.cuda_graph_engine import AVATAR_KEY, CudaGraphEngine, GraphOptions, StaticGraph
from reenact_app.engines.select import EngineOptions, FallbackEngine, create_engine
from reenact_app.engines.torch_engine import TorchEngine
from reenact_app.session import AnimationSession
from reenact_common.errors import EngineError
from reenact_common.video_io import centre_crop, read_frames

CPU_EAGER = GraphOptions(device="cpu", dtype="float32", channels_last=False, mode="eager", warmup=1)


@pytest.fixture(scope="module")
def shipped():
    """The bundled trained weights (paper-rt): parity on an untrained model's near-constant output says little."""
    return load_checkpoint(None)


@pytest.fixture(scope="module")
def torch_outputs(shipped, frames):
    return _drive(TorchEngine(shipped), frames[0], frames[1:])


@pytest.fixture(scope="module")
def frames(clips_dir):
    clip = clips_dir / "wyhsirius+LIA/data/vox/driving2.mp4"
    return [centre_crop(f, 256) for f in read_frames(clip, 16)[::5]]  # an avatar and 3 driving frames


def _drive(engine, avatar, frames) -> list[np.ndarray]:
    session = AnimationSession(engine)
    session.set_avatar(avatar)
    return [session.animate(f) for f in frames]


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


# -- selection and fallback -----------------------------------------------------------------------
def _cuda_everywhere(monkeypatch, available: set[str]) -> None:
    monkeypatch.setattr(select, "_probe", lambda c: (c in available, "fake GPU" if c in available else "fake: missing"))


def test_auto_picks_cuda_graphs_when_only_torch_has_cuda(monkeypatch, shipped):
    _cuda_everywhere(monkeypatch, {"torch-cudagraph", "torch-cuda", "onnxruntime-cpu", "torch-cpu"})
    built = []

    def build(candidate, model, options):
        built.append((candidate, options.torch_compile))
        # The real engine, on the CPU path: what select does with it is what is under test.
        return CudaGraphEngine(model, CPU_EAGER) if candidate == "torch-cudagraph" else TorchEngine(model)

    monkeypatch.setattr(select, "build_candidate", build)
    engine = create_engine(shipped, "auto")
    assert built == [("torch-cudagraph", False)]
    assert engine.selection.chosen == "torch-cudagraph"
    assert [c for c, _ in engine.selection.skipped] == ["tensorrt", "onnxruntime-cuda"]
    assert isinstance(engine, FallbackEngine) and engine.remaining == ["torch-cuda", "onnxruntime-cpu", "torch-cpu"]


def test_failed_capture_falls_back_to_plain_torch_cuda(monkeypatch, shipped, caplog):
    _cuda_everywhere(monkeypatch, {"torch-cudagraph", "torch-cuda", "torch-cpu"})

    def failing_capture(self, *args, **kwargs):
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    monkeypatch.setattr(StaticGraph, "__init__", failing_capture)

    def build(candidate, model, options):
        if candidate == "torch-cudagraph":
            return CudaGraphEngine(model, CPU_EAGER)
        engine = TorchEngine(model)
        engine.name = candidate
        return engine

    monkeypatch.setattr(select, "build_candidate", build)
    with caplog.at_level("WARNING", logger="reenact_app.engines.select"):
        engine = create_engine(shipped, "auto")
    assert engine.name == "torch-cuda"
    reason = dict(engine.selection.skipped)["torch-cudagraph"]
    assert reason.startswith("failed to start") and "stream is capturing" in reason
    assert "PyTorch CUDA graphs skipped" in caplog.text


def test_real_builder_passes_compile_option(monkeypatch, shipped):
    seen = {}

    class Recorder:
        def __init__(self, model, options):
            seen["options"] = options

    import reenact_app.engines.cuda_graph_engine as module

    monkeypatch.setattr(module, "CudaGraphEngine", Recorder)
    select.build_candidate("torch-cudagraph", shipped, EngineOptions(torch_compile=True, device_index=1))
    assert seen["options"] == GraphOptions(device="cuda:1", mode="compile")
    select.build_candidate("torch-cudagraph", shipped, EngineOptions())
    assert seen["options"].mode == "cudagraph" and seen["options"].dtype == "float16"


def test_reenact_bench_reports_the_graph_engine_when_cuda_is_present(monkeypatch):
    from reenact_app.commands.bench import default_engines

    monkeypatch.setattr(select, "cuda_status", lambda: (False, "no CUDA"))
    assert "torch-cudagraph" not in default_engines()
    monkeypatch.setattr(select, "cuda_status", lambda: (True, "fake GPU"))
    engines = default_engines()
    assert engines[:2] == ("torch-cudagraph", "torch-cuda") and "onnxruntime-cpu" in engines


def test_replay_failure_mid_run_switches_engine_and_reencodes(monkeypatch, shipped, frames, torch_outputs):
    _cuda_everywhere(monkeypatch, {"torch-cudagraph", "torch-cpu"})
    monkeypatch.setattr(
        select, "build_candidate",
        lambda c, model, options: CudaGraphEngine(model, CPU_EAGER) if c == "torch-cudagraph" else TorchEngine(model),
    )
    engine = create_engine(shipped, "auto")
    session = AnimationSession(engine)
    session.set_avatar(frames[0])
    session.animate(frames[1])

    def lost_device():
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(engine.active._animate_graph, "run", lost_device)
    out = session.animate(frames[2])  # the PyTorch CPU engine takes over, avatar re-encoded
    assert engine.describe() == "PyTorch cpu fp32" and "illegal memory access" in engine.notice
    assert AVATAR_KEY not in session.source.tensors
    assert _diff(out, torch_outputs[1]).max() <= 1  # the same session sequence on the PyTorch engine


# -- the static-buffer path on the CPU, real frames, trained weights --------------------------------
@pytest.mark.parametrize("channels_last", [False, True])
def test_static_buffers_match_the_torch_engine_on_real_frames(shipped, frames, torch_outputs, channels_last):
    options = GraphOptions(device="cpu", dtype="float32", channels_last=channels_last, mode="eager", warmup=1)
    graph_out = _drive(CudaGraphEngine(shipped, options), frames[0], frames[1:])
    torch_out = torch_outputs
    diffs = [_diff(a, b) for a, b in zip(graph_out, torch_out)]
    assert max(d.max() for d in diffs) <= 1  # uint8 rounding of float differences < 1e-5
    assert np.mean([d.mean() for d in diffs]) < 0.01
    # and the output moves with the driving frames (not a constant or the avatar itself)
    assert _diff(graph_out[0], graph_out[-1]).mean() > 1.0


def test_keypoints_match_and_avatar_switch_copies_buffers(shipped, frames):
    graph, reference = CudaGraphEngine(shipped, CPU_EAGER), TorchEngine(shipped)
    np.testing.assert_allclose(graph.detect_keypoints(frames[1]).value,
                               reference.detect_keypoints(frames[1]).value, atol=1e-5)
    a, b = graph.encode_source(frames[0]), graph.encode_source(frames[-1])
    ra, rb = reference.encode_source(frames[0]), reference.encode_source(frames[-1])
    kp = reference.detect_keypoints(frames[2])
    # A, B, A: each call must animate its own avatar, whichever was loaded into the buffers before
    outs = [graph.animate(state, kp) for state in (a, b, a)]
    refs = [reference.animate(ra, kp), reference.animate(rb, kp)]
    for out, ref in zip(outs, (refs[0], refs[1], refs[0])):
        assert _diff(out, ref).max() <= 1
    assert _diff(outs[0], outs[1]).mean() > 1.0


def test_motion_for_full_resolution_matches_the_torch_engine(shipped, frames):
    graph, reference = CudaGraphEngine(shipped, CPU_EAGER), TorchEngine(shipped)
    kp = reference.detect_keypoints(frames[1])
    ours = graph.animate_with_motion(graph.encode_source(frames[0]), kp)
    theirs = reference.animate_with_motion(reference.encode_source(frames[0]), kp)
    assert _diff(ours.image, theirs.image).max() <= 1
    np.testing.assert_allclose(ours.motion.displacement, theirs.motion.displacement, atol=1e-5)
    np.testing.assert_allclose(ours.motion.visibility, theirs.motion.visibility, atol=1e-5)
    assert np.abs(ours.motion.displacement).max() > 1e-3  # a real motion, not zeros


def test_bad_input_is_one_clear_error(shipped, frames):
    graph = CudaGraphEngine(shipped, CPU_EAGER)
    with pytest.raises(EngineError, match="256x256x3 crops"):
        graph.detect_keypoints(frames[0][:128])
    foreign = TorchEngine(shipped).encode_source(frames[0])
    with pytest.raises(EngineError, match="encoded by another engine"):
        graph.animate(foreign, graph.detect_keypoints(frames[1]))
    with pytest.raises(EngineError, match="needs a CUDA device"):
        CudaGraphEngine(shipped, GraphOptions(device="cpu", mode="cudagraph"))
    with pytest.raises(EngineError, match="dtype must be one of"):
        CudaGraphEngine(shipped, GraphOptions(device="cpu", mode="eager", dtype="int8"))


# -- on a GPU ------------------------------------------------------------------------------------------
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda_only
def test_fp16_cuda_graphs_match_fp32_torch_on_real_frames(shipped, frames):
    graph_out = _drive(CudaGraphEngine(shipped, GraphOptions(device="cuda:0")), frames[0], frames[1:])
    fp32 = TorchEngine(shipped, device="cuda:0", half=False)
    reference = _drive(fp32, frames[0], frames[1:])
    diffs = [_diff(a, b) for a, b in zip(graph_out, reference)]
    # fp16 rounding: a fraction of a grey level on average, a few levels at worst (occlusion edges)
    assert np.mean([d.mean() for d in diffs]) < 1.0
    assert max(d.max() for d in diffs) <= 48
