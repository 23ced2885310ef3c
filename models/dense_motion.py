"""Dense motion network (FOMM sec. 3.2; paper sec. 2.2-2.3).

Per keypoint, a first-order Taylor approximation gives a sparse motion (the source warped around each
keypoint); an hourglass over the deformed sources and heatmap differences gives features xi; a softmax
mask over K+1 motions combines them into one dense flow (eq. 12). FOMM reads one occlusion map from xi;
the paper's variant refines xi with attention before the mask head and reads three occlusion maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.attention import AttentionModule
from models.blocks import AntiAliasInterpolation2d, Hourglass, inverse_2x2, kp2gaussian, make_coordinate_grid
from models.motion import KP
from models.config import ModelConfig
from models.occlusion import MultiScaleOcclusion


class DenseMotionNetwork(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        cfg = config.dense_motion
        self.num_kp = config.num_kp
        self.scale_factor = cfg.scale_factor
        self.kp_variance = cfg.kp_variance
        in_features = (config.num_kp + 1) * (config.num_channels + 1)
        self.hourglass = Hourglass(cfg.block_expansion, in_features, cfg.num_blocks, cfg.max_features)
        channels = self.hourglass.out_filters
        self.mask = nn.Conv2d(channels, config.num_kp + 1, kernel_size=7, padding=3)
        self.attention = (
            AttentionModule(channels, cfg.attention, cfg.attention_reduction, cfg.attention_sigma)
            if cfg.attention != "none"
            else None
        )
        self.occlusion = None
        self.occlusion_restoration = None
        if cfg.multiscale_occlusion:
            self.occlusion_restoration = MultiScaleOcclusion(channels, cfg.occlusion_channels)
        elif config.generator.estimate_occlusion_map:
            self.occlusion = nn.Conv2d(channels, 1, kernel_size=7, padding=3)
        if self.scale_factor != 1:
            self.down = AntiAliasInterpolation2d(config.num_channels, self.scale_factor)

    def downscale(self, source_image: torch.Tensor) -> torch.Tensor:
        """Source at the dense-motion resolution (cacheable once per avatar)."""
        return self.down(source_image) if self.scale_factor != 1 else source_image

    def heatmap_representations(self, h: int, w: int, kp_driving: KP, kp_source: KP) -> torch.Tensor:
        """Gaussian(driving) - Gaussian(source) per keypoint, with a zero map for the background: (B, K+1, 1, h, w)."""
        heatmap = kp2gaussian(kp_driving["value"], h, w, self.kp_variance) - kp2gaussian(
            kp_source["value"], h, w, self.kp_variance
        )
        zeros = torch.zeros_like(heatmap[:, :1])
        return torch.cat([zeros, heatmap], dim=1).unsqueeze(2)

    def sparse_motions(self, h: int, w: int, kp_driving: KP, kp_source: KP) -> torch.Tensor:
        """T_{S<-D}(z) ~ p_S + J_S J_D^{-1} (z - p_D) per keypoint, identity for the background: (B, K+1, h, w, 2)."""
        b = kp_source["value"].shape[0]
        identity = make_coordinate_grid(h, w, kp_source["value"]).view(1, 1, h, w, 2)
        offsets = identity - kp_driving["value"].view(b, self.num_kp, 1, 1, 2)
        if "jacobian" in kp_driving:
            jacobian = torch.matmul(kp_source["jacobian"], inverse_2x2(kp_driving["jacobian"]))
            offsets = torch.einsum("bkij,bkhwj->bkhwi", jacobian, offsets)
        driving_to_source = offsets + kp_source["value"].view(b, self.num_kp, 1, 1, 2)
        return torch.cat([identity.expand(b, 1, h, w, 2), driving_to_source], dim=1)

    def deformed_sources(self, source_small: torch.Tensor, sparse_motions: torch.Tensor) -> torch.Tensor:
        """The source warped by each sparse motion: (B, K+1, C, h, w)."""
        b, c, h, w = source_small.shape
        k1 = self.num_kp + 1
        repeated = source_small.unsqueeze(1).expand(b, k1, c, h, w).reshape(b * k1, c, h, w)
        grids = sparse_motions.reshape(b * k1, h, w, 2)
        deformed = F.grid_sample(repeated, grids, mode="bilinear", padding_mode="zeros", align_corners=True)
        return deformed.view(b, k1, c, h, w)

    def forward(self, source_image: torch.Tensor, kp_driving: KP, kp_source: KP) -> dict:
        return self.predict(self.downscale(source_image), kp_driving, kp_source)

    def predict(self, source_small: torch.Tensor, kp_driving: KP, kp_source: KP) -> dict:
        """Dense flow, masks and occlusion map(s) from the already downscaled source."""
        b, _, h, w = source_small.shape
        heatmaps = self.heatmap_representations(h, w, kp_driving, kp_source)
        motions = self.sparse_motions(h, w, kp_driving, kp_source)
        deformed = self.deformed_sources(source_small, motions)
        xi = self.hourglass(torch.cat([heatmaps, deformed], dim=2).view(b, -1, h, w))

        refined = self.attention(xi) if self.attention is not None else xi
        mask = F.softmax(self.mask(refined), dim=1)
        deformation = (motions * mask.unsqueeze(-1)).sum(dim=1)  # eq. 12: (B, h, w, 2)
        out = {"sparse_deformed": deformed, "mask": mask, "deformation": deformation}
        if self.occlusion_restoration is not None:
            out["occlusion_map"] = self.occlusion_restoration(xi)
        elif self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(xi))
        return out
