"""Attention on the dense-motion features (paper sec. 2.2, eqs. 8-11), plus standard CBAM for ablations.

Paper channel attention: W_C = sigmoid(sigma * MLP(GlobalMaxPool(xi))) -- max pooling only, scaled by
sigma (= 2) so the weights spread over (0, 1) instead of bunching near 0.5.
Spatial attention: W_S = sigmoid(Conv7x7([mean_c(xi'), max_c(xi')])).  Output: xi' = W_S * (W_C * xi).
CBAM (Woo et al. 2018): W_C = sigmoid(MLP(avg) + MLP(max)), same spatial attention.
"""

from __future__ import annotations

import torch
from torch import nn


# Narrow dense-motion features (60 channels in the real-time presets) divided by r = 16 leave a
# 3-unit MLP whose ReLUs can all be dead at initialisation (seen with seed 0: zero gradient to the
# whole channel attention). A floor of 8 hidden units keeps it trainable.
MIN_HIDDEN = 8


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 16, sigma: float = 2.0, use_avg_pool: bool = False):
        super().__init__()
        hidden = min(channels, max(MIN_HIDDEN, channels // reduction))
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, kernel_size=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, kernel_size=1, bias=False),
        )
        self.sigma = sigma
        self.use_avg_pool = use_avg_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns the (B, C, 1, 1) channel weights."""
        logits = self.mlp(torch.amax(x, dim=(2, 3), keepdim=True))
        if self.use_avg_pool:
            logits = logits + self.mlp(torch.mean(x, dim=(2, 3), keepdim=True))
        return torch.sigmoid(self.sigma * logits)


class SpatialAttention(nn.Module):
    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size=kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Returns the (B, 1, H, W) spatial weights."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(pooled))


class AttentionModule(nn.Module):
    """Channel then spatial attention; `kind` is "paper" or "cbam"."""

    def __init__(self, channels: int, kind: str = "paper", reduction: int = 16, sigma: float = 2.0):
        super().__init__()
        if kind == "paper":
            self.channel = ChannelAttention(channels, reduction, sigma=sigma, use_avg_pool=False)
        elif kind == "cbam":
            self.channel = ChannelAttention(channels, reduction, sigma=1.0, use_avg_pool=True)
        else:
            raise ValueError(f"unknown attention kind {kind!r}")
        self.spatial = SpatialAttention()
        self.last_weights: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channel_weights = self.channel(x)
        refined = channel_weights * x
        spatial_weights = self.spatial(refined)
        self.last_weights = {"channel": channel_weights, "spatial": spatial_weights}
        return spatial_weights * refined
