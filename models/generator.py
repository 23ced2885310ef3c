"""Occlusion-aware generator (FOMM sec. 3.3) and the paper's multi-scale restoration decoder (sec. 2.3).

The work splits in two so a live session can cache the avatar side:
`encode_source` (once per avatar: encoder features, the downscaled source for the dense-motion
network and, with the warped-source blend, the occlusion map at rest) and `animate` (per driving frame:
dense motion, warp, decoder). `forward` chains them.
"""

from __future__ import annotations

import torch
from torch import nn

from models.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d, warp
from models.config import ModelConfig
from models.dense_motion import DenseMotionNetwork
from models.motion import KP
from models.source_blend import blend_visible, displacement, image_visibility


def _resize_like(mask: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    if mask.shape[2:] != features.shape[2:]:
        mask = nn.functional.interpolate(mask, size=features.shape[2:], mode="bilinear", align_corners=False)
    return mask


class OcclusionAwareGenerator(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        cfg = config.generator
        self.multiscale = config.dense_motion.multiscale_occlusion
        self.dense_motion_network = DenseMotionNetwork(config)
        self.first = SameBlock2d(config.num_channels, cfg.block_expansion, kernel_size=7, padding=3)
        width = [min(cfg.max_features, cfg.block_expansion * (2**i)) for i in range(cfg.num_down_blocks + 1)]
        self.down_blocks = nn.ModuleList(
            DownBlock2d(width[i], width[i + 1]) for i in range(cfg.num_down_blocks)
        )
        self.up_blocks = nn.ModuleList(
            UpBlock2d(width[cfg.num_down_blocks - i], width[cfg.num_down_blocks - i - 1])
            for i in range(cfg.num_down_blocks)
        )
        self.bottleneck = nn.Sequential()
        for i in range(cfg.num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(width[-1]))
        k = cfg.final_kernel_size
        self.final = nn.Conv2d(cfg.block_expansion, config.num_channels, kernel_size=k, padding=k // 2)
        self.warped_source_blend = cfg.warped_source_blend  # weightless: switchable on any checkpoint

    def encode_source(self, source_image: torch.Tensor, kp_source: KP) -> dict[str, torch.Tensor]:
        """Everything that depends on the avatar alone; cache it once per avatar."""
        features = self.first(source_image)
        for block in self.down_blocks:
            features = block(features)
        state = {
            "source_image": source_image,
            "source_small": self.dense_motion_network.downscale(source_image),
            "features": features,
            "kp_source_value": kp_source["value"],
        }
        if "jacobian" in kp_source:
            state["kp_source_jacobian"] = kp_source["jacobian"]
        if self.warped_source_blend:
            state["rest_occlusion"] = self.rest_occlusion(state["source_small"], kp_source)
        return state

    def rest_occlusion(self, source_small: torch.Tensor, kp_source: KP) -> torch.Tensor:
        """The final occlusion map for the avatar driven by its own keypoints: what the warped-source
        blend normalises by (models/source_blend.py). Ones where the model has no occlusion map."""
        occlusion = self.dense_motion_network.predict(source_small, kp_source, kp_source).get("occlusion_map")
        if occlusion is None:
            return source_small.new_ones(source_small.shape[0], 1, *source_small.shape[2:])
        return self._final_occlusion(occlusion)

    def _final_occlusion(self, occlusion):
        """The map of the last decoder stage: the paper's finest (image-size) map, or FOMM's single one."""
        return occlusion[-1] if self.multiscale else occlusion

    def animate(self, state: dict[str, torch.Tensor], kp_driving: KP) -> dict:
        """Per-frame work: dense motion from cached source state, warp, occlusion, decode."""
        kp_source = {"value": state["kp_source_value"]}
        if "kp_source_jacobian" in state:
            kp_source["jacobian"] = state["kp_source_jacobian"]
        motion = self.dense_motion_network.predict(state["source_small"], kp_driving, kp_source)
        deformation = motion["deformation"]
        out = {"mask": motion["mask"], "sparse_deformed": motion["sparse_deformed"]}
        occlusion = motion.get("occlusion_map")
        if occlusion is not None:
            out["occlusion_map"] = occlusion

        features = warp(state["features"], deformation)
        if self.multiscale:
            features = self.bottleneck(features)
            features = features * _resize_like(occlusion[0], features)
            for block, occlusion_map in zip(self.up_blocks, occlusion[1:]):
                features = block(features)
                features = features * _resize_like(occlusion_map, features)
        else:
            if occlusion is not None:
                features = features * _resize_like(occlusion, features)
            features = self.bottleneck(features)
            for block in self.up_blocks:
                features = block(features)
        out["deformed"] = warp(state["source_image"], deformation)
        out["deformation"] = deformation
        out["displacement"] = displacement(deformation)
        prediction = torch.sigmoid(self.final(features))
        if self.warped_source_blend and occlusion is not None:
            weight = image_visibility(self._final_occlusion(occlusion), state["rest_occlusion"], prediction.shape[2:])
            prediction = blend_visible(prediction, state["source_image"], deformation, weight)
        else:  # the prediction shows none of the warped avatar
            weight = prediction.new_zeros(prediction.shape[0], 1, *prediction.shape[2:])
        # Where (and how much) the output is the avatar itself, warped: the app warps the avatar's
        # full-resolution picture there (reenact_app/full_resolution.py).
        out["visibility"] = weight
        out["prediction"] = prediction
        return out

    def forward(self, source_image: torch.Tensor, kp_driving: KP, kp_source: KP) -> dict:
        return self.animate(self.encode_source(source_image, kp_source), kp_driving)
