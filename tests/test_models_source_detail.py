"""Source-detail transfer (models/source_detail.py): what it keeps, what it adds, and that it is optional."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from models import build_model, load_checkpoint, preset
from models.config import ConfigError, ModelConfig
from models.paths import default_weights
from models.source_detail import SourceDetail
from reenact_app.video_io import centre_crop, read_frames

CLIP = "wyhsirius+LIA/data/vox/driving2.mp4"


def _with_detail(config: ModelConfig, sigma: float) -> ModelConfig:
    return dataclasses.replace(config, generator=dataclasses.replace(config.generator, source_detail_sigma=sigma))


def _laplacian_energy(image: torch.Tensor) -> float:
    """Mean |Laplacian| over the image: how much fine detail it has."""
    kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    return float(torch.nn.functional.conv2d(image, kernel, groups=3).abs().mean())


def test_hidden_or_flat_source_leaves_the_prediction_unchanged():
    torch.manual_seed(0)
    detail = SourceDetail(3.0)
    prediction, deformed = torch.rand(2, 3, 64, 64) * 0.5 + 0.25, torch.rand(2, 3, 64, 64)
    hidden = torch.zeros(2, 1, 16, 16)
    assert torch.allclose(detail(prediction, deformed, hidden), prediction)
    # A residual with no fine detail (a uniform colour shift) is all low frequency: nothing is added.
    assert torch.allclose(detail(prediction, prediction + 0.1, torch.ones(2, 1, 64, 64)), prediction, atol=1e-6)


def test_visible_fine_detail_is_transferred_and_output_stays_in_range():
    prediction = torch.full((1, 3, 64, 64), 0.5)
    stripes = torch.zeros(1, 3, 64, 64)
    stripes[..., ::2] = 1.0  # a 2-pixel pattern: far above a sigma-3 blur's passband
    out = SourceDetail(3.0)(prediction, stripes, None)
    assert out.min() >= 0.0 and out.max() <= 1.0
    centre = out[..., 16:48, 16:48]
    assert torch.allclose(centre[..., ::2], torch.ones_like(centre[..., ::2]), atol=0.02)
    assert torch.allclose(centre[..., 1::2], torch.zeros_like(centre[..., 1::2]), atol=0.02)


def test_checkpoints_are_interchangeable_and_default_is_off():
    plain, detailed = preset("paper-rt"), _with_detail(preset("paper-rt"), 3.0)
    assert plain.generator.source_detail_sigma == 0.0 and preset("fomm-vox256").generator.source_detail_sigma == 0.0
    a, b = build_model(plain), build_model(detailed)
    assert a.generator.source_detail is None and b.generator.source_detail is not None
    for part in ("kp_detector", "generator"):
        assert {k: v.shape for k, v in getattr(a, part).state_dict().items()} == \
            {k: v.shape for k, v in getattr(b, part).state_dict().items()}
    with pytest.raises(ConfigError, match="source_detail_sigma"):
        ModelConfig.from_dict({"generator": {"source_detail_sigma": -1.0}})


@pytest.fixture(scope="module")
def real_pair(clips_dir) -> tuple[torch.Tensor, torch.Tensor]:
    frames = [centre_crop(f, 256) for f in read_frames(clips_dir / CLIP, 30)]
    as_tensor = lambda f: torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255.0  # noqa: E731
    return as_tensor(frames[0]), as_tensor(frames[-1])


def test_shipped_weights_output_is_sharper_with_detail_on_a_real_face(real_pair):
    """The bundled weights decode a blurred face; the transfer brings its detail back toward the real frame's."""
    source, driving = real_pair
    model = load_checkpoint()
    assert model.config.generator.source_detail_sigma > 0  # shipped on (assets/weights/README.md)
    outputs = []
    for sigma in (0.0, 3.0):
        model.set_source_detail(sigma)
        with torch.no_grad():
            outputs.append(model.generator(source, kp_driving=model.kp_detector(driving),
                                           kp_source=model.kp_detector(source))["prediction"])
    blurred, detailed = outputs
    real = _laplacian_energy(driving)
    assert _laplacian_energy(blurred) < 0.6 * real  # the problem the transfer addresses
    assert _laplacian_energy(detailed) > 1.5 * _laplacian_energy(blurred)
    # Low frequencies (pose, expression) still come from the decoder: the change is small on average.
    assert float((detailed - blurred).abs().mean()) < 0.03
    assert np.isfinite(detailed.numpy()).all()


def test_convert_checkpoint_switches_detail_and_keeps_the_training_metadata(tmp_path):
    from reenact_app.cli import main as cli_main

    out = tmp_path / "off.safetensors"
    assert cli_main(["convert-checkpoint", str(default_weights()), "-o", str(out), "--source-detail", "0"]) == 0
    off, shipped = load_checkpoint(out), load_checkpoint()
    assert off.config.generator.source_detail_sigma == 0.0 and off.generator.source_detail is None
    assert off.metadata["step"] == shipped.metadata["step"] and off.metadata["converted_from"] == "default.safetensors"
    assert all(torch.equal(a, b) for a, b in zip(off.generator.state_dict().values(),
                                                 shipped.generator.state_dict().values()))
    with pytest.raises(ConfigError, match="source_detail_sigma"):
        shipped.set_source_detail(float("nan"))
