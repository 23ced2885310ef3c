"""Keypoint detector (FOMM sec. 3.1): hourglass -> K heatmaps -> keypoints and local affine jacobians."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.blocks import AntiAliasInterpolation2d, Hourglass, make_coordinate_grid
from models.config import ModelConfig


class KPDetector(nn.Module):
    """Finds K keypoints as softmax-heatmap expectations in [-1, 1], each with a 2x2 jacobian.

    The jacobian head starts at the identity (zero weights, bias [1, 0, 0, 1]), as in FOMM.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        cfg = config.kp_detector
        self.num_kp = config.num_kp
        self.temperature = cfg.temperature
        self.scale_factor = cfg.scale_factor
        self.predictor = Hourglass(cfg.block_expansion, config.num_channels, cfg.num_blocks, cfg.max_features)
        self.kp = nn.Conv2d(self.predictor.out_filters, config.num_kp, kernel_size=7, padding=cfg.pad)
        if config.estimate_jacobian:
            self.num_jacobian_maps = 1 if cfg.single_jacobian_map else config.num_kp
            self.jacobian = nn.Conv2d(
                self.predictor.out_filters, 4 * self.num_jacobian_maps, kernel_size=7, padding=cfg.pad
            )
            with torch.no_grad():
                self.jacobian.weight.zero_()
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(self.num_jacobian_maps))
        else:
            self.jacobian = None
        if self.scale_factor != 1:
            self.down = AntiAliasInterpolation2d(config.num_channels, self.scale_factor)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """image (B, 3, H, W) in [0, 1] -> {'value': (B, K, 2), 'jacobian': (B, K, 2, 2)}."""
        x = self.down(image) if self.scale_factor != 1 else image
        features = self.predictor(x)
        logits = self.kp(features)
        b, k, h, w = logits.shape
        heatmap = F.softmax(logits.view(b, k, -1) / self.temperature, dim=2).view(b, k, h, w)
        grid = make_coordinate_grid(h, w, heatmap)
        value = (heatmap.unsqueeze(-1) * grid.view(1, 1, h, w, 2)).sum(dim=(2, 3))
        out = {"value": value}
        if self.jacobian is not None:
            jacobian_map = self.jacobian(features).reshape(b, self.num_jacobian_maps, 4, h, w)
            jacobian = (heatmap.unsqueeze(2) * jacobian_map).view(b, k, 4, -1).sum(dim=-1)
            out["jacobian"] = jacobian.view(b, k, 2, 2)
        return out
