"""The int8 parity gate on the shipped weights and real frames: int8 is used where it passes, fp32 where not."""

from __future__ import annotations

import json
import logging

import pytest

from export import int8_gate
from export.int8_gate import RESULT_FILE, Int8Gate, int8_parity
from models import load_checkpoint
from reenact_app.engines.onnx_engine import ensure_export
from reenact_app.engines.select import EngineOptions, create_engine


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint(None)


@pytest.fixture(scope="module")
def cache(shipped, tmp_path_factory):
    """One export of the shipped weights with the int8 graph calibrated on the bundled clip (as the app does)."""
    folder = tmp_path_factory.mktemp("cache")
    ensure_export(shipped, folder, quantized=True)
    return folder


# Limits this int8 graph meets (its measured error is in docs/performance.md: it fails the stricter defaults).
LENIENT = Int8Gate(mean_grey_levels=3.0, max_grey_levels=160.0)


def _options(cache, **kw) -> EngineOptions:
    return EngineOptions(cache_dir=cache, threads=1, runtime_fallback=False, **kw)


def test_a_model_within_the_gate_runs_int8(shipped, cache, caplog):
    with caplog.at_level(logging.INFO, logger="reenact_app.engines.select"):
        engine = create_engine(shipped, "onnxruntime-int8", options=_options(cache, int8_gate=LENIENT))
    assert engine.describe() == "ONNX Runtime cpu int8"
    assert "passes the gate" in caplog.text
    folder = next((cache / "onnx").iterdir())
    measured = json.loads((folder / RESULT_FILE).read_text())
    # a real, lossy measurement: int8 is not exact on trained weights, and within the limits
    assert 0.0 < measured["mean_grey_levels"] <= LENIENT.mean_grey_levels
    assert measured["mean_grey_levels"] < measured["max_grey_levels"] <= LENIENT.max_grey_levels
    assert measured["frames"] == Int8Gate().frames + 1  # the avatar drives itself too


def test_a_model_failing_the_gate_falls_back_to_fp32_with_a_log_line(shipped, cache, caplog):
    strict = Int8Gate(mean_grey_levels=0.05, max_grey_levels=1.0)
    with caplog.at_level(logging.WARNING, logger="reenact_app.engines.select"):
        engine = create_engine(shipped, "onnxruntime-int8", options=_options(cache, int8_gate=strict))
    assert engine.describe() == "ONNX Runtime cpu fp32"
    lines = [r.getMessage() for r in caplog.records if "fails the gate" in r.getMessage()]
    assert len(lines) == 1 and lines[0].endswith("using the fp32 animate graph")


def test_cpu_int8_option_and_the_measurement_is_cached(shipped, cache, monkeypatch):
    assert create_engine(shipped, "onnxruntime-cpu", options=_options(cache)).describe() == "ONNX Runtime cpu fp32"

    def no_remeasure(*args, **kwargs):
        raise AssertionError("the gate re-measured a model it had measured")

    monkeypatch.setattr(int8_gate, "measure_int8_parity", no_remeasure)
    engine = create_engine(shipped, "onnxruntime-cpu", options=_options(cache, cpu_int8=True, int8_gate=LENIENT))
    assert engine.describe() == "ONNX Runtime cpu int8"
    folder = next((cache / "onnx").iterdir())
    assert int8_parity(shipped, folder).passes(LENIENT)
