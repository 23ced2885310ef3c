"""ONNX export: three graphs, opset >= 17, onnx.checker, parity with PyTorch on real frames (<= 1e-3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from export.onnx_export import OPSET, ExportError, export_onnx, model_hash, read_manifest
from export.parity import check_parity
from models import build_model
from reenact_common.video_io import centre_crop, read_frames

CLIPS = ("wyhsirius+LIA/data/vox/driving2.mp4", "ali-vilab+dreamtalk/data/style_clip/video/M030_front_angry_level3_001.mp4")


@pytest.fixture(scope="module")
def real_frames(clips_dir: Path) -> list[np.ndarray]:
    frames = []
    for clip in CLIPS:
        frames += [centre_crop(f, 256) for f in read_frames(clips_dir / clip, 40)[::10]]
    return frames


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("paper-rt").eval()
    folder = tmp_path_factory.mktemp("onnx")
    return model, export_onnx(model, folder)


def test_three_graphs_opset_and_checker(exported):
    import onnx

    model, result = exported
    assert set(result.files) == {"kp_detector", "source_encoder", "animate"}
    for part in result.files:
        graph = onnx.load(str(result.path(part)))
        onnx.checker.check_model(graph, full_check=True)
        assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= OPSET >= 17
    animate = onnx.load(str(result.path("animate")))
    inputs = [i.name for i in animate.graph.input]
    assert inputs == ["source_small", "features", "kp_source_value", "kp_source_jacobian",
                      "kp_driving_value", "kp_driving_jacobian"]
    assert "GridSample" in {n.op_type for n in animate.graph.node}
    assert result.model_hash == model_hash(model)


def test_parity_on_real_frames(exported, real_frames):
    model, result = exported
    report = check_parity(model, result.directory, real_frames)
    assert report.frames == len(real_frames) >= 8
    assert report.max_abs_prediction <= 1e-3, report.line()
    assert report.max_abs_keypoints <= 1e-3, report.line()


def test_export_leaves_model_in_eval_mode(exported):
    """torch.onnx.export restores the wrapper's mode onto submodules: the wrappers must be in eval mode."""
    model, _ = exported
    assert not model.kp_detector.training and not model.generator.training
    assert not any(m.training for m in model.generator.modules())


def test_manifest_roundtrip_and_errors(exported, tmp_path):
    _, result = exported
    again = read_manifest(result.directory)
    assert again.files == result.files and again.jacobian and again.image_size == 256
    with pytest.raises(ExportError, match="not an ONNX export"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({**json.loads((Path(result.directory) / "manifest.json").read_text())}))
    with pytest.raises(ExportError, match="missing graph"):
        read_manifest(tmp_path)


def test_int8_quantization_runs_and_reports_parity(exported, real_frames, tmp_path):
    import shutil

    from export.quantize import quantize_export

    model, result = exported
    folder = tmp_path / "q"
    shutil.copytree(result.directory, folder)
    added = quantize_export(folder, real_frames[:4])
    assert set(added) == {"animate_int8"}
    assert "animate_int8" in read_manifest(folder).files
    assert read_manifest(folder).int8_calibration == "4 given frames"
    report = check_parity(model, folder, real_frames[:4], tolerance=float("inf"), int8=True)
    assert np.isfinite(report.max_abs_prediction) and report.max_abs_prediction < 0.5


def test_dynamo_exporter_also_matches(tmp_path, real_frames):
    torch.manual_seed(1)
    model = build_model("fomm-rt").eval()
    result = export_onnx(model, tmp_path, exporter="dynamo")
    assert result.exporter == "dynamo"
    report = check_parity(model, tmp_path, real_frames[:3])
    assert report.ok, report.line()


@pytest.mark.slow
def test_fomm_vox256_parity(tmp_path, real_frames):
    torch.manual_seed(0)
    model = build_model("fomm-vox256").eval()
    result = export_onnx(model, tmp_path)
    report = check_parity(model, result.directory, real_frames[:4])
    assert report.ok, report.line()


def test_calibration_and_parity_frames_are_real_and_disjoint() -> None:
    from export.frames import bundled_driving_clip, sample_frames

    assert bundled_driving_clip() is not None  # the runtime's int8 export calibrates on it
    parity = sample_frames(None, 4, 64)
    calibration = sample_frames(None, 4, 64, offset=1)
    assert len(parity) == len(calibration) == 4 and parity[0].shape == (64, 64, 3) and parity[0].dtype == np.uint8
    assert all(not np.array_equal(a, b) for a in parity for b in calibration)
    assert parity[0].std() > 20  # a real frame, not a flat synthetic image


def test_warped_source_blend_export_takes_the_avatar_and_matches(tmp_path, real_frames):
    """With the warped-source blend the per-frame graph warps the avatar itself: it and the occlusion map
    at rest (from the source encoder, which then takes the avatar's keypoints) become inputs, fed by the
    ONNX Runtime engine from its cached avatar state, and the graphs still match PyTorch."""
    import dataclasses

    import onnx

    from reenact_app.engines.onnx_engine import OnnxRuntimeEngine
    from reenact_app.engines.torch_engine import TorchEngine

    torch.manual_seed(2)
    config = build_model("paper-rt").config
    config = dataclasses.replace(config, generator=dataclasses.replace(config.generator, warped_source_blend=True))
    model = build_model(config).eval()
    result = export_onnx(model, tmp_path)
    assert result.uses_source_image and read_manifest(tmp_path).uses_source_image
    assert [i.name for i in onnx.load(str(result.path("animate"))).graph.input][:4] == \
        ["source_small", "features", "source_image", "rest_occlusion"]
    encoder = onnx.load(str(result.path("source_encoder"))).graph
    assert [i.name for i in encoder.input] == ["image", "kp_source_value", "kp_source_jacobian"]
    assert [o.name for o in encoder.output] == ["source_small", "features", "rest_occlusion"]
    report = check_parity(model, tmp_path, real_frames[:4])
    assert report.ok, report.line()
    ort_engine, torch_engine = OnnxRuntimeEngine(tmp_path), TorchEngine(model)
    frames = real_frames[:2]
    outputs = [engine.animate(engine.encode_source(frames[0]), engine.detect_keypoints(frames[1]))
               for engine in (ort_engine, torch_engine)]
    assert np.abs(outputs[0].astype(int) - outputs[1].astype(int)).max() <= 1
    # Driven by its own keypoints the avatar comes back as it is, whatever the (here random) weights.
    still = ort_engine.animate(ort_engine.encode_source(frames[0]), ort_engine.detect_keypoints(frames[0]))
    assert np.abs(still.astype(int) - frames[0].astype(int)).max() <= 1
