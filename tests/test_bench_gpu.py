"""The prepared GPU benchmark runs every step on a CPU (--device cpu --dry-run), so its first GPU run works."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_gpu


def test_refuses_to_time_a_cpu_without_dry_run(capsys):
    assert bench_gpu.main(["--device", "cpu"]) == 2
    assert "--dry-run" in capsys.readouterr().err


@pytest.mark.slow
def test_dry_run_on_cpu_writes_the_full_report(tmp_path):
    out = tmp_path / "gpu.json"
    assert bench_gpu.main(["--device", "cpu", "--dry-run", "--preset", "paper-rt", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = report["speed"]["paper-rt"]["engines"]
    assert set(rows) == {"torch-cuda-fp16", "torch-cuda-fp32", "cudagraph-fp16", "cudagraph-bf16"}
    assert report["speed"]["paper-rt"]["errors"] == {}
    assert all(row["frame"]["n"] == 2 and row["fps"] > 0 for row in rows.values())
    # on the CPU the graph engines run fp32 through their static buffers: the same output as PyTorch fp32
    parity = report["parity"]["engines"]
    assert parity["cudagraph-fp16"]["whole_frame"]["max_grey_levels"] <= 1
    assert out.with_suffix(".md").read_text().startswith("| preset | engine |")
