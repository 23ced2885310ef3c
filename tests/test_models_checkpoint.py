"""Checkpoint formats: project safetensors round-trip, upstream FOMM .pth.tar + YAML, and bad files."""

from __future__ import annotations

import json
import os
import pickle
import struct

import numpy as np
import pytest
import torch
import yaml

from models import CheckpointError, build_model, load_checkpoint, save_checkpoint
from reenact_app.cli import main as cli_main

SMALL_UPSTREAM = {
    "model_params": {
        "common_params": {"num_kp": 10, "num_channels": 3, "estimate_jacobian": True},
        "kp_detector_params": {"temperature": 0.1, "block_expansion": 8, "max_features": 64,
                               "scale_factor": 0.25, "num_blocks": 3},
        "generator_params": {"block_expansion": 8, "max_features": 32, "num_down_blocks": 2,
                             "num_bottleneck_blocks": 2, "estimate_occlusion_map": True,
                             "dense_motion_params": {"block_expansion": 8, "max_features": 64,
                                                     "num_blocks": 3, "scale_factor": 0.25}},
    }
}


@pytest.fixture(scope="module")
def frames(reference_dir):
    data = np.load(reference_dir / "small_case.npz")
    return torch.from_numpy(data["input/frames"]).float().div(255).permute(0, 3, 1, 2)


@pytest.fixture
def upstream_files(tmp_path, reference_dir):
    """An upstream-layout checkpoint (weights in upstream key names + optimizer entries) and its YAML."""
    data = np.load(reference_dir / "small_case.npz")
    checkpoint = {"epoch": 99, "optimizer_generator": {"state": {}, "param_groups": []}}
    for part in ("kp_detector", "generator"):
        checkpoint[part] = {k.split("/", 1)[1]: torch.from_numpy(data[k]) for k in data.files if k.startswith(part + "/")}
    ckpt, config = tmp_path / "upstream.pth.tar", tmp_path / "small.yaml"
    torch.save(checkpoint, ckpt)
    config.write_text(yaml.safe_dump(SMALL_UPSTREAM))
    return ckpt, config


def _predict(model, frames):
    with torch.no_grad():
        kp_s, kp_d = model.kp_detector(frames[0:1]), model.kp_detector(frames[2:3])
        return model.generator(frames[0:1], kp_driving=kp_d, kp_source=kp_s)["prediction"]


def test_project_format_round_trips_exactly(tmp_path, frames):
    torch.manual_seed(1)
    model = build_model("paper-rt").eval()
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    loaded = load_checkpoint(path)
    assert loaded.config == model.config
    assert not loaded.kp_detector.training and not loaded.generator.training
    big = torch.nn.functional.interpolate(frames, size=256, mode="bilinear", align_corners=False)
    assert torch.equal(_predict(model, big), _predict(loaded, big))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not safetensors' owner-only 0600


def test_upstream_checkpoint_loads_with_yaml_and_converts(upstream_files, tmp_path, frames, reference_dir):
    ckpt, config = upstream_files
    model = load_checkpoint(ckpt, config)
    expected_kp = np.load(reference_dir / "small_case.npz")["output/kp_source/value"]
    with torch.no_grad():
        assert np.abs(model.kp_detector(frames[0:1])["value"].numpy() - expected_kp).max() <= 1e-4
    out = tmp_path / "converted.safetensors"
    assert cli_main(["convert-checkpoint", str(ckpt), "--config", str(config), "-o", str(out)]) == 0
    converted = load_checkpoint(out)
    assert converted.metadata["converted_from"] == "upstream.pth.tar"
    assert torch.equal(_predict(model, frames), _predict(converted, frames))


def test_upstream_checkpoint_without_config_says_what_to_pass(upstream_files):
    ckpt, _ = upstream_files
    with pytest.raises(CheckpointError, match="YAML config"):
        load_checkpoint(ckpt)


def test_wrong_architecture_names_missing_unexpected_and_misshaped_keys(upstream_files):
    ckpt, _ = upstream_files
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(ckpt, "fomm-rt")
    message = str(info.value)
    assert "mis-shaped" in message and "does not fit" in message
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(ckpt, "paper-rt")


def test_malicious_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pth.tar"
    with evil.open("wb") as handle:
        pickle.dump({"kp_detector": Exploit(), "generator": {}}, handle)
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_checkpoint(evil, "fomm-rt")
    assert not marker.exists()


@pytest.mark.parametrize("payload", [b"", b"\x00" * 7, b"not a checkpoint at all", bytes(range(256)) * 40])
def test_random_bytes_fail_cleanly(tmp_path, payload):
    path = tmp_path / "junk.pth"
    path.write_bytes(payload)
    with pytest.raises(CheckpointError):
        load_checkpoint(path, "fomm-rt")


def test_truncated_safetensors_and_forged_header_fail_cleanly(tmp_path):
    good = save_checkpoint(build_model("fomm-rt"), tmp_path / "good.safetensors")
    data = good.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(truncated)
    header = json.dumps({"kp_detector.x": {"dtype": "F32", "shape": [1000000000], "data_offsets": [0, 4000000000]}})
    forged = tmp_path / "forged.safetensors"
    forged.write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\x00" * 16)
    with pytest.raises(CheckpointError):
        load_checkpoint(forged)


def test_foreign_safetensors_and_nan_weights_are_rejected(tmp_path):
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a Reenact checkpoint"):
        load_checkpoint(foreign)
    model = build_model("fomm-rt")
    with torch.no_grad():
        model.generator.final.weight[0, 0, 0, 0] = float("nan")
    nan_path = save_checkpoint(model, tmp_path / "nan.safetensors")
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(nan_path)


def test_missing_file_and_unwritable_output(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError, match="can't write"):
        save_checkpoint(build_model("fomm-rt"), blocker / "sub" / "m.safetensors")


def test_bad_yaml_config_is_a_clear_error(tmp_path, upstream_files):
    ckpt, _ = upstream_files
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_params:\n  common_params: {num_kp: 10}\n  kp_detector_params: {blocks: 3}\n")
    with pytest.raises(Exception, match="unknown key"):
        load_checkpoint(ckpt, bad)
