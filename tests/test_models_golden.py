"""Golden tests: our FOMM reproduces the upstream code's outputs on ../shared/reference/fomm/small_case.

REENACT_TEST_DEVICE=cuda runs the same comparison on a GPU (TF32 off, so the 1e-4 tolerance still holds).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from models import ModelConfig, build_model, from_upstream_params, normalize_kp

TOL = 1e-4
DEVICE = torch.device(os.environ.get("REENACT_TEST_DEVICE", "cpu"))


@pytest.fixture(scope="module")
def case(reference_dir):
    meta = json.loads((reference_dir / "small_case.json").read_text())
    data = np.load(reference_dir / "small_case.npz")
    return meta, {k: data[k] for k in data.files}


def _small_config(meta) -> ModelConfig:
    cfg = meta["config"]
    return from_upstream_params(
        {"common_params": cfg["common"], "kp_detector_params": cfg["kp"], "generator_params": cfg["gen"]}
    )


@pytest.fixture(scope="module")
def outputs(case):
    meta, data = case
    model = build_model(_small_config(meta))
    for part in ("kp_detector", "generator"):
        state = {k.split("/", 1)[1]: torch.from_numpy(v) for k, v in data.items() if k.startswith(part + "/")}
        getattr(model, part).load_state_dict(state, strict=True)
    model.eval().to(DEVICE)
    if DEVICE.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    frames = torch.from_numpy(data["input/frames"]).float().div(255).permute(0, 3, 1, 2).to(DEVICE)
    source, driving_initial, driving = frames[0:1], frames[1:2], frames[2:3]
    with torch.no_grad():
        kp_source = model.kp_detector(source)
        kp_driving_initial = model.kp_detector(driving_initial)
        kp_driving = model.kp_detector(driving)
        kp_norm = normalize_kp(kp_source, kp_driving, kp_driving_initial, **meta["normalize_kp"])
        gen = model.generator(source, kp_driving=kp_norm, kp_source=kp_source)
    out = {}
    for name, kp in (("kp_source", kp_source), ("kp_driving_initial", kp_driving_initial),
                     ("kp_driving", kp_driving), ("kp_norm", kp_norm)):
        out[f"output/{name}/value"] = kp["value"]
        out[f"output/{name}/jacobian"] = kp["jacobian"]
    for key in ("deformed", "mask", "occlusion_map", "prediction", "sparse_deformed"):
        out[f"output/generator/{key}"] = gen[key]
    return out


def test_every_stored_output_is_checked(case, outputs):
    _, data = case
    stored = {k for k in data if k.startswith("output/")}
    assert stored == set(outputs)


@pytest.mark.parametrize(
    "key",
    [
        "output/kp_source/value", "output/kp_source/jacobian",
        "output/kp_driving_initial/value", "output/kp_driving_initial/jacobian",
        "output/kp_driving/value", "output/kp_driving/jacobian",
        "output/kp_norm/value", "output/kp_norm/jacobian",
        "output/generator/mask", "output/generator/sparse_deformed", "output/generator/occlusion_map",
        "output/generator/deformed", "output/generator/prediction",
    ],
)
def test_matches_upstream(case, outputs, key):
    _, data = case
    expected = data[key]
    got = outputs[key].cpu().numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= TOL, f"{key}: max abs diff {np.abs(got - expected).max():.2e}"
