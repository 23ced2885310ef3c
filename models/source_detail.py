"""Source-detail transfer: the warped avatar's fine detail put back into the generator's output.

Why: a small generator trained on little data decodes a blurred face (the identity metric AED is
blur-limited: docs/training.md), while the source image warped by the same dense motion (`deformed`)
is sharp wherever the occlusion map says the avatar is visible. Keeping the prediction's low
frequencies (pose, mouth, lighting: what the decoder gets right) and taking the high frequencies from
the occlusion-weighted mix of warped source and prediction gives

    output = blend - G_sigma * blend + G_sigma * prediction,   blend = occ * deformed + (1 - occ) * prediction
           = prediction + highpass_sigma(occ * (deformed - prediction))

(one Gaussian blur). sigma -> 0 returns the prediction, sigma -> inf the plain occlusion blend.
Parameter-free (the kernel is a non-persistent buffer), so checkpoints load with it on or off; FOMM and
the paper have no such stage and keep it off (`GeneratorConfig.source_detail_sigma = 0`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def gaussian_kernel_1d(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    return kernel / kernel.sum()


class SourceDetail(nn.Module):
    def __init__(self, sigma: float, channels: int = 3):
        super().__init__()
        kernel = gaussian_kernel_1d(sigma)
        self.radius = kernel.numel() // 2
        self.channels = channels
        self.register_buffer("kernel_x", kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), persistent=False)
        self.register_buffer("kernel_y", kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), persistent=False)

    def blur(self, image: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian blur with edge-replicating borders (no dark rim)."""
        r = self.radius
        image = F.pad(image, (r, r, r, r), mode="replicate")
        image = F.conv2d(image, self.kernel_x.to(image.dtype), groups=self.channels)
        return F.conv2d(image, self.kernel_y.to(image.dtype), groups=self.channels)

    def forward(self, prediction: torch.Tensor, deformed: torch.Tensor, occlusion: torch.Tensor | None) -> torch.Tensor:
        """prediction, deformed: (B, C, H, W) in [0, 1]; occlusion: (B, 1, h, w) in [0, 1] or None (all visible)."""
        residual = deformed - prediction
        if occlusion is not None:
            if occlusion.shape[2:] != prediction.shape[2:]:
                occlusion = F.interpolate(occlusion, size=prediction.shape[2:], mode="bilinear", align_corners=False)
            residual = occlusion * residual
        return (prediction + residual - self.blur(residual)).clamp(0.0, 1.0)
