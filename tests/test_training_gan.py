"""Adversarial terms (FOMM vox-adv): discriminator shapes, the game's gradients, and a GAN training run."""

from __future__ import annotations

import contextlib

import pytest
import torch

from training.config import GanConfig, TrainConfig
from training.discriminator import Adversary, PatchDiscriminator
from reenact_common.errors import ConfigError


def test_patch_discriminator_features_and_scores() -> None:
    torch.manual_seed(0)
    disc = PatchDiscriminator(GanConfig(block_expansion=8, max_features=32, num_blocks=4))
    features, scores = disc(torch.rand(2, 3, 64, 64))
    assert [f.shape[1] for f in features] == [16, 32, 32, 32]  # widths double, capped at max_features
    assert scores.shape[:2] == (2, 1) and scores.shape[-1] > 1  # a map of patch scores, not one number


def test_generator_side_trains_the_image_and_discriminator_side_ignores_it() -> None:
    torch.manual_seed(0)
    adversary = Adversary(GanConfig(block_expansion=8, max_features=32, num_blocks=3, scales=(1.0, 0.5),
                                    feature_matching=(10.0, 10.0, 10.0)))
    real = torch.rand(2, 3, 64, 64)
    fake = torch.rand(2, 3, 64, 64, requires_grad=True)
    g = adversary(real, fake, "generator")
    assert set(g) == {"generator_gan", "feature_matching"} and g["feature_matching"] > 0
    sum(g.values()).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    fake.grad = None
    d = adversary(real, fake, "discriminator")
    d["discriminator"].backward()
    assert fake.grad is None  # the discriminator's loss must not push the generator
    assert all(p.grad is not None for p in adversary.parameters())
    # identical real and fake: feature matching is exactly zero
    same = adversary(real, real.clone().requires_grad_(), "generator")
    assert same["feature_matching"].item() == 0.0
    with pytest.raises(ValueError):
        adversary(real, fake, "both")


def test_discriminator_learns_to_separate_real_from_fake() -> None:
    torch.manual_seed(0)
    adversary = Adversary(GanConfig(block_expansion=8, max_features=32, num_blocks=3, feature_matching=(0, 0, 0)))
    optimizer = torch.optim.Adam(adversary.parameters(), lr=2e-3, betas=(0.5, 0.999))
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    real = (0.5 + 0.5 * torch.sin(xx / 2)).expand(4, 3, 64, 64)  # sharp stripes
    fake = torch.full_like(real, 0.5)  # their blurred average: what pixel losses alone produce
    history = []
    for _ in range(40):
        loss = adversary(real, fake, "discriminator")["discriminator"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert history[-1] < 0.3 * history[0], history


def test_generator_ramp_follows_discriminator_updates_and_resumes() -> None:
    from training.trainer import _AdversaryState

    config = TrainConfig(gan=GanConfig(enabled=True, block_expansion=8, max_features=32, num_blocks=2,
                                       feature_matching=(1.0, 1.0), warmup_steps=4))
    adversary = _AdversaryState.build(config, torch.device("cpu"))
    real, fake = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    weights = []
    for _ in range(5):
        weights.append(adversary.generator_weight)
        adversary.step(real, fake, adversary.module, 1e-3, contextlib.nullcontext)
    assert weights == [0.0, 0.25, 0.5, 0.75, 1.0]
    resumed = _AdversaryState.build(config, torch.device("cpu"))
    state = adversary.state_dict()
    state["discriminator_updates"] = torch.tensor(2)
    resumed.load(state, config)
    assert resumed.generator_weight == 0.5
    del state["discriminator_updates"]  # a state from before the ramp existed: its discriminator is trained
    resumed.load(state, config)
    assert resumed.generator_weight == 1.0
    no_ramp = _AdversaryState.build(config.replace(gan=GanConfig(enabled=True)), torch.device("cpu"))
    assert no_ramp.generator_weight == 1.0


def test_gan_config_bounds() -> None:
    with pytest.raises(ConfigError, match="gan"):
        TrainConfig.from_dict({"gan": {"enabled": True, "num_blocks": 0}})
    with pytest.raises(ConfigError):
        TrainConfig.from_dict({"gan": {"enabled": True, "scales": [2.0]}})
    with pytest.raises(ConfigError, match="warmup"):
        TrainConfig.from_dict({"gan": {"enabled": True, "warmup_steps": -1}})
    assert TrainConfig.from_dict({"gan": {"enabled": True}}).gan.enabled
