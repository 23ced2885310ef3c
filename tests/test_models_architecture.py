"""Architecture tests: vox-256 checkpoint layout, the paper variant's shapes, attention and gradients."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from models import ModelConfig, build_model, preset
from models.attention import AttentionModule
from models.config import ConfigError


def test_fomm_vox256_matches_public_checkpoint_layout(reference_dir):
    reference = json.loads((reference_dir / "vox256_keys.json").read_text())
    model = build_model("fomm-vox256")
    for part in ("kp_detector", "generator"):
        ours = {k: list(v.shape) for k, v in getattr(model, part).state_dict().items()}
        theirs = {k: list(v) for k, v in reference[part].items()}
        assert ours == theirs, f"{part}: keys/shapes differ from the public vox-256 checkpoint"
        assert model.parameter_count()[part] == reference["params"][part]


def _small_paper_config(**dense_changes) -> ModelConfig:
    """paper-rt widths at 64x64 keep these tests fast; dense-motion scale 0.25 -> maps at 16/32/64."""
    base = preset("paper-rt")
    return dataclasses.replace(
        base,
        image_size=64,
        dense_motion=dataclasses.replace(base.dense_motion, **dense_changes),
    )


def test_paper_vox256_occlusion_maps_are_64_128_256():
    model = build_model("paper-vox256").eval()
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        kp = model.kp_detector(x)
        out = model.generator(x, kp_driving=kp, kp_source=kp)
    assert [tuple(o.shape) for o in out["occlusion_map"]] == [(1, 1, 64, 64), (1, 1, 128, 128), (1, 1, 256, 256)]
    assert out["prediction"].shape == (1, 3, 256, 256)
    assert out["mask"].shape == (1, 11, 64, 64)
    assert model.generator.final.kernel_size == (1, 1)


@pytest.mark.parametrize(
    "changes",
    [
        {"attention": "paper"},
        {"attention": "cbam"},
        {"multiscale_occlusion": True},
        {"attention": "cbam", "multiscale_occlusion": True},
        {"attention": "paper", "multiscale_occlusion": True},
    ],
    ids=["paper-attention", "cbam", "multiscale", "cbam+multiscale", "full-paper"],
)
def test_each_flag_runs_forward_and_backward_and_trains_every_new_parameter(changes):
    torch.manual_seed(0)
    model = build_model(_small_paper_config(**changes))
    model.kp_detector.train()
    model.generator.train()
    source, driving = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    kp_source, kp_driving = model.kp_detector(source), model.kp_detector(driving)
    out = model.generator(source, kp_driving=kp_driving, kp_source=kp_source)
    (out["prediction"] - driving).abs().mean().backward()
    dense = model.generator.dense_motion_network
    new_modules = [m for m in (dense.attention, dense.occlusion_restoration) if m is not None]
    assert new_modules
    for module in new_modules:
        for name, param in module.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, f"no gradient reaches {name}"
    if dense.occlusion_restoration is not None:
        assert [o.shape[-1] for o in out["occlusion_map"]] == [16, 32, 64]


def test_attention_weights_lie_in_open_unit_interval():
    torch.manual_seed(0)
    attention = AttentionModule(channels=32, kind="paper", reduction=4, sigma=2.0)
    xi = torch.randn(2, 32, 16, 16) * 3
    refined = attention(xi)
    for weights in attention.last_weights.values():
        assert (weights > 0).all() and (weights < 1).all()
    assert attention.last_weights["channel"].shape == (2, 32, 1, 1)
    assert attention.last_weights["spatial"].shape == (2, 1, 16, 16)
    expected = attention.last_weights["spatial"] * (attention.last_weights["channel"] * xi)
    assert torch.allclose(refined, expected)


def test_paper_channel_attention_uses_max_pool_only_and_sigma():
    """W_C = sigmoid(sigma * MLP(maxpool)): inputs with equal max but different means give equal weights."""
    torch.manual_seed(0)
    attention = AttentionModule(channels=8, kind="paper", reduction=2, sigma=2.0)
    a = torch.zeros(1, 8, 4, 4)
    a[..., 0, 0] = 1.0
    b = torch.full((1, 8, 4, 4), -5.0)
    b[..., 0, 0] = 1.0
    assert torch.allclose(attention.channel(a), attention.channel(b))
    mlp_out = attention.channel.mlp(torch.ones(1, 8, 1, 1))
    assert torch.allclose(attention.channel(a), torch.sigmoid(2.0 * mlp_out))
    cbam = AttentionModule(channels=8, kind="cbam", reduction=2)
    assert not torch.allclose(cbam.channel(a), cbam.channel(b))


def test_three_call_split_equals_plain_forward():
    torch.manual_seed(0)
    model = build_model("paper-rt").eval()
    source, driving = torch.rand(1, 3, 256, 256), torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        kp_s, kp_d = model.kp_detector(source), model.kp_detector(driving)
        plain = model.generator(source, kp_driving=kp_d, kp_source=kp_s)["prediction"]
        state = model.generator.encode_source(source, kp_s)
        split = model.generator.animate(state, kp_d)["prediction"]
    assert torch.equal(plain, split)


def test_config_rejects_unknown_keys_and_wrong_types():
    with pytest.raises(ConfigError, match="unknown key"):
        ModelConfig.from_dict({"num_kp": 10, "bogus": 1})
    with pytest.raises(ConfigError, match="expected int"):
        ModelConfig.from_dict({"num_kp": "ten"})
    with pytest.raises(ConfigError, match="attention"):
        ModelConfig.from_dict({"dense_motion": {"attention": "transformer"}})
    config = preset("paper-vox256")
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
