"""Multi-scale occlusion restoration (paper sec. 2.3, Figure 8).

From the dense-motion features xi: O_1 = sigmoid(conv1x1(xi)) at the dense-motion resolution, then two
up blocks (bilinear x2, conv3x3, BatchNorm, ReLU) give features at 2x and 4x, each read out by its own
sigmoid(conv1x1). For 256x256 input and dense-motion scale 0.25 the maps are 64, 128 and 256 px.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BilinearUpBlock(nn.Module):
    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(out_features, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return F.relu(self.norm(self.conv(x)))


class MultiScaleOcclusion(nn.Module):
    """xi (B, C, h, w) -> [O_1 (B,1,h,w), O_2 (B,1,2h,2w), O_3 (B,1,4h,4w)], each in (0, 1)."""

    def __init__(self, in_features: int, channels: tuple[int, int] = (64, 32)):
        super().__init__()
        self.heads = nn.ModuleList([nn.Conv2d(in_features, 1, kernel_size=1)])
        self.up_blocks = nn.ModuleList()
        previous = in_features
        for width in channels:
            self.up_blocks.append(BilinearUpBlock(previous, width))
            self.heads.append(nn.Conv2d(width, 1, kernel_size=1))
            previous = width

    def forward(self, xi: torch.Tensor) -> list[torch.Tensor]:
        maps = [torch.sigmoid(self.heads[0](xi))]
        features = xi
        for block, head in zip(self.up_blocks, self.heads[1:]):
            features = block(features)
            maps.append(torch.sigmoid(head(features)))
        return maps
