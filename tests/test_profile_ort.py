"""benchmarks/profile_ort: ONNX Runtime's profile of the bundled model's per-frame graphs, by block."""

from __future__ import annotations

import json

import pytest

from benchmarks import profile_ort


def test_profile_of_the_bundled_model_names_every_block(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("REENACT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "profile.json"
    assert profile_ort.main(["--frames", "3", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    animate = report["graphs"]["animate"]
    assert animate["runs"] == 2  # the first of 3 is the warm-up
    blocks = {row["name"]: row for row in animate["by_block"]}
    # every grid sample, both networks and the blend are found by name or place, none lumped together
    for block in ("grid sample: sparse motions (source x K+1, 64 px)", "grid sample: feature warp (64 px)",
                  "grid sample: warped-source blend (256 px)", "dense motion: hourglass",
                  "dense motion: occlusion heads (multi-scale)", "generator: bottleneck",
                  "generator: decoder up blocks", "dense motion: heatmaps and sparse motions",
                  "warped-source blend, visibility, displacement"):
        assert blocks[block]["ms"] > 0, block
    assert sum(row["share"] for row in animate["by_block"]) == pytest.approx(1.0, abs=1e-3)
    keypoints = {row["name"] for row in report["graphs"]["kp_detector"]["by_block"]}
    assert {"keypoints: anti-aliased downscale", "keypoints: hourglass"} <= keypoints
