"""Warped-source blend (models/source_blend.py): an exact warp, what it takes from where, and that it is optional."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from models import build_model, load_checkpoint, preset
from models.blocks import make_coordinate_grid, warp
from models.config import ModelConfig
from reenact_common.paths import default_weights
from models.source_blend import blend_warped_source, visibility, warp_full_resolution
from reenact_common.video_io import centre_crop, read_frames

CLIP = "wyhsirius+LIA/data/vox/driving2.mp4"


def _identity_motion(batch: int, size: int = 16) -> torch.Tensor:
    return make_coordinate_grid(size, size, torch.zeros(1)).expand(batch, size, size, 2)


def _laplacian_energy(image: torch.Tensor) -> float:
    """Mean |Laplacian| over the image: how much fine detail it has."""
    kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    return float(torch.nn.functional.conv2d(image, kernel, groups=3).abs().mean())


def test_identity_motion_warps_the_avatar_onto_itself_exactly():
    """Unlike FOMM's visualisation `deformed` (absolute grid resized: 252/255 scale about the centre)."""
    torch.manual_seed(0)
    image = torch.rand(1, 3, 64, 64)
    assert torch.allclose(warp_full_resolution(image, _identity_motion(1)), image, atol=1e-5)
    assert float((warp(image, _identity_motion(1)) - image).abs().mean()) > 0.05  # the FOMM-style resize
    shift = _identity_motion(1).clone()
    shift[..., 0] += 2 * 4 / 63  # sample 4 pixels to the right at full resolution
    assert torch.allclose(warp_full_resolution(image, shift)[..., :, :56], image[..., :, 4:60], atol=1e-5)


def test_occlusion_map_decides_between_avatar_and_decoder():
    torch.manual_seed(0)
    prediction, avatar = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    motion = _identity_motion(2)
    assert torch.allclose(blend_warped_source(prediction, avatar, motion, torch.zeros(2, 1, 16, 16)), prediction)
    assert torch.allclose(blend_warped_source(prediction, avatar, motion, torch.ones(2, 1, 16, 16)), avatar, atol=1e-5)
    half = torch.full((2, 1, 16, 16), 0.25)
    assert torch.allclose(blend_warped_source(prediction, avatar, motion, half), 0.25 * avatar + 0.75 * prediction, atol=1e-5)
    assert blend_warped_source(prediction, avatar, motion, None) is prediction  # no occlusion map: nothing to blend


def test_visibility_is_the_occlusion_relative_to_rest():
    rest = torch.tensor([0.5, 0.8, 1.0, 0.0]).view(1, 1, 2, 2)
    occlusion = torch.tensor([0.25, 0.8, 0.9, 0.3]).view(1, 1, 2, 2)
    expected = torch.tensor([0.5, 1.0, 0.9, 1.0]).view(1, 1, 2, 2)  # at most 1; a zero rest map: shown in full
    assert torch.allclose(visibility(occlusion, rest), expected)
    assert visibility(occlusion, None) is occlusion
    torch.manual_seed(0)
    prediction, avatar = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    at_rest = blend_warped_source(prediction, avatar, _identity_motion(1), rest, rest)
    assert torch.allclose(at_rest, avatar, atol=1e-5)  # unmoved and occluded as at rest: the avatar itself


def test_checkpoints_are_interchangeable_and_default_is_off():
    plain = preset("paper-rt")
    blended = dataclasses.replace(plain, generator=dataclasses.replace(plain.generator, warped_source_blend=True))
    assert not plain.generator.warped_source_blend and not preset("fomm-vox256").generator.warped_source_blend
    a, b = build_model(plain), build_model(blended)
    for part in ("kp_detector", "generator"):
        assert {k: v.shape for k, v in getattr(a, part).state_dict().items()} == \
            {k: v.shape for k, v in getattr(b, part).state_dict().items()}
    assert ModelConfig.from_dict(json_round_trip(blended.to_dict())) == blended


def json_round_trip(data: dict) -> dict:
    import json

    return json.loads(json.dumps(data))


@pytest.fixture(scope="module")
def real_pair(clips_dir) -> tuple[torch.Tensor, torch.Tensor]:
    frames = [centre_crop(f, 256) for f in read_frames(clips_dir / CLIP, 30)]
    as_tensor = lambda f: torch.from_numpy(f).permute(2, 0, 1)[None].float() / 255.0  # noqa: E731
    return as_tensor(frames[0]), as_tensor(frames[-1])


def test_shipped_weights_are_sharper_and_closer_to_the_real_frame_with_the_blend(real_pair):
    """The bundled weights' decoder is blurred; the blend restores the detail and still follows the motion
    (frame 0 of a shared clip driven by frame 29: far closer to frame 29 than frame 0 itself is)."""
    source, driving = real_pair
    model = load_checkpoint()
    assert model.config.generator.warped_source_blend  # shipped on (assets/weights/README.md)
    outputs = []
    for on in (False, True):
        model.set_warped_source_blend(on)
        with torch.no_grad():
            outputs.append(model.generator(source, kp_driving=model.kp_detector(driving),
                                           kp_source=model.kp_detector(source))["prediction"])
    decoder, blended = outputs
    real = _laplacian_energy(driving)
    assert _laplacian_energy(decoder) < 0.6 * real  # the problem the blend addresses
    assert _laplacian_energy(blended) > 1.5 * _laplacian_energy(decoder)
    assert float((blended - driving).abs().mean()) < 0.7 * float((source - driving).abs().mean())
    assert np.isfinite(blended.numpy()).all()


def test_shipped_weights_return_the_avatar_itself_when_it_is_not_moved(real_pair):
    """Driven by its own keypoints the avatar must come back unchanged: the occlusion map at rest is
    0.5-0.7 over eyes and mouth, so a blend by the plain map would soften exactly those features."""
    source, _ = real_pair
    model = load_checkpoint()
    with torch.no_grad():
        kp = model.kp_detector(source)
        blended = model.generator(source, kp_driving=kp, kp_source=kp)["prediction"]
        decoder = model.set_warped_source_blend(False).generator(source, kp_driving=kp, kp_source=kp)
    occlusion = decoder["occlusion_map"][-1]
    plain = blend_warped_source(decoder["prediction"], source, decoder["deformation"], occlusion)
    assert float((blended - source).abs().max()) < 2e-3
    assert float(occlusion.min()) < 0.8  # the map alone is far from 1 at rest ...
    assert float((plain - source).abs().mean()) > float((blended - source).abs().mean()) + 5e-4  # ... and blurs


def test_convert_checkpoint_switches_the_blend_and_keeps_the_training_metadata(tmp_path):
    from reenact_app.cli import main as cli_main

    out = tmp_path / "off.safetensors"
    assert cli_main(["convert-checkpoint", str(default_weights()), "-o", str(out), "--source-blend", "off"]) == 0
    off, shipped = load_checkpoint(out), load_checkpoint()
    assert not off.config.generator.warped_source_blend and not off.generator.warped_source_blend
    assert off.metadata["step"] == shipped.metadata["step"] and off.metadata["converted_from"] == "default.safetensors"
    assert all(torch.equal(a, b) for a, b in zip(off.generator.state_dict().values(),
                                                 shipped.generator.state_dict().values()))
