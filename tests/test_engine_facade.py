"""The engines' facade (what the GUI uses instead of torch/models/export): loading with the detail switch,
the first-run ONNX export in a cancellable child process, and the export cache key it shares with the
engines. Real bundled weights, real ONNX Runtime, real frames."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from reenact_app.engines import EngineOpener, ModelSpec, needs_export
from reenact_app.engines import select
from reenact_app.engines.select import EngineOptions
from reenact_app.session import AnimationSession
from reenact_common.errors import CheckpointError, EngineError
from reenact_common.video_io import centre_crop, read_frames

CLIP = "wyhsirius+LIA/data/vox/driving2.mp4"


@pytest.fixture
def options(tmp_path) -> EngineOptions:
    return EngineOptions(cache_dir=tmp_path / "cache")


def test_needs_export_follows_the_engine_order(options, monkeypatch):
    spec = ModelSpec()  # the bundled weights
    assert not needs_export(spec, "torch", options)
    assert needs_export(spec, "onnxruntime", options)
    assert needs_export(spec, "auto", options)  # no GPU here: ONNX Runtime CPU is the first candidate
    monkeypatch.setattr(select, "tensorrt_status", lambda: (True, "pretend GPU"))
    assert not needs_export(spec, "auto", options)  # TensorRT comes first and needs no ONNX graphs
    with pytest.raises(EngineError, match="unknown engine"):
        needs_export(spec, "warp-drive", options)


@pytest.mark.slow  # about 40 s on 2 cores: a full export in the child
def test_first_run_export_happens_in_a_child_and_feeds_the_engine(options, clips_dir, monkeypatch):
    import export.onnx_export

    def no_export_here(*args, **kwargs):
        raise AssertionError("the export ran in the app's process")

    monkeypatch.setattr(export.onnx_export, "export_onnx", no_export_here)
    events: list[bool] = []
    opener = EngineOpener(on_export=events.append)
    spec = ModelSpec()
    engine = opener.open(spec, "onnxruntime-cpu", options)
    assert events == [True, False]  # the app was told why it waits, and when it stops waiting
    assert opener.last_export.process.returncode == 0
    assert engine.describe() == "ONNX Runtime cpu fp32"
    assert not needs_export(spec, "onnxruntime", options)
    assert needs_export(ModelSpec(warped_source_blend=False), "onnxruntime", options)  # another model, another key

    events.clear()
    torch_engine = opener.open(spec, "torch-cpu", options)
    assert events == []
    frames = [centre_crop(f, engine.image_size) for f in read_frames(clips_dir / CLIP, 12)[::4]]
    outputs = []
    for each in (engine, torch_engine):
        session = AnimationSession(each)
        session.set_avatar(frames[0])
        outputs.append([session.animate(f) for f in frames[1:]])
    for a, b in zip(*outputs):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_detail_switch_reaches_the_engine(options, clips_dir):
    frames = [centre_crop(f, 256) for f in read_frames(clips_dir / CLIP, 9)[::8]]
    outputs = []
    for detail in (True, False):
        session = AnimationSession(EngineOpener().open(ModelSpec(warped_source_blend=detail), "torch-cpu", options))
        session.set_avatar(frames[0])
        outputs.append(session.animate(frames[1]))
    assert np.abs(outputs[0].astype(int) - outputs[1].astype(int)).mean() > 0.5


def test_cancel_ends_the_export_child_and_later_opens(options):
    events: list[bool] = []
    opener = EngineOpener(on_export=events.append)
    result: list = []
    thread = threading.Thread(target=lambda: result.append(opener.open(ModelSpec(), "onnxruntime", options)))
    thread.start()
    deadline = time.monotonic() + 60
    while not events and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events == [True], "the export child never started"
    opener.cancel()
    thread.join(15)
    assert not thread.is_alive() and result == [None]
    assert opener.last_export.process.poll() is not None  # the child is gone
    assert events == [True, False]
    assert needs_export(ModelSpec(), "onnxruntime", options)  # nothing half-written counts as an export
    assert opener.open(ModelSpec(), "torch-cpu", options) is None  # closing: no engine nobody will use


def test_a_bad_checkpoint_is_a_checkpoint_error(tmp_path, options):
    """The GUI falls back to Auto on EngineError only; a broken file must not look like a missing engine."""
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        EngineOpener().open(ModelSpec(str(bad)), "torch-cpu", options)
