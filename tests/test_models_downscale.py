"""The anti-aliased downscale evaluates its blur only where the subsampling keeps it: the same pixels as
upstream FOMM's full-resolution blur followed by striding, exactly, on real frames and in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.blocks import AntiAliasInterpolation2d
from tests.conftest import bgr_frames

CLIP = "rizkiarm+LipNet/evaluation/samples/GRID/bbaf2n.mpg"  # 360x288, a speaking face


def upstream_downscale(module: AntiAliasInterpolation2d, x: torch.Tensor) -> torch.Tensor:
    """FOMM's AntiAliasInterpolation2d.forward: blur every pixel, then keep every step-th."""
    out = F.pad(x, (module.ka, module.kb, module.ka, module.kb))
    out = F.conv2d(out, weight=module.weight, groups=module.groups)
    return out[:, :, :: module.step, :: module.step]


@pytest.fixture(scope="module")
def frames(clips_dir) -> torch.Tensor:
    rgb = [f[:, :, ::-1] for f in bgr_frames(clips_dir / CLIP, n=4)]
    assert len(rgb) == 4
    return torch.from_numpy(np.stack(rgb).astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize("scale", [0.5, 0.25, 0.125])
def test_strided_blur_equals_blur_then_subsample(frames, scale):
    module = AntiAliasInterpolation2d(3, scale)
    with torch.no_grad():
        ours, upstream = module(frames), upstream_downscale(module, frames)
    assert ours.shape == upstream.shape == (4, 3, -(-288 // module.step), -(-360 // module.step))
    assert torch.equal(ours, upstream)


class _UpstreamDownscale(torch.nn.Module):
    def __init__(self, module: AntiAliasInterpolation2d):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upstream_downscale(self.module, x)


def test_onnx_runtime_strided_blur_equals_upstream_graph(frames, tmp_path):
    """What the exported keypoint detector runs: the strided graph gives ONNX Runtime's own result for
    the upstream graph, bit for bit (so the faster export changes no output)."""
    ort = pytest.importorskip("onnxruntime")
    module = AntiAliasInterpolation2d(3, 0.25).eval()
    x = frames[:1]
    results = []
    for name, graph in (("ours", module), ("upstream", _UpstreamDownscale(module).eval())):
        path = tmp_path / f"{name}.onnx"
        torch.onnx.export(graph, (x,), str(path), input_names=["image"], output_names=["small"],
                          opset_version=17, dynamo=False)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        results.append(session.run(None, {"image": x.numpy()})[0])
    assert results[0].shape == (1, 3, 72, 90)
    np.testing.assert_array_equal(results[0], results[1])
