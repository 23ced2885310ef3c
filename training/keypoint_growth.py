"""Grow a trained model from K to K' keypoints, so that a run with more keypoints starts from its behaviour.

Why a split (Net2Net-style widening) and not a random init: each new keypoint starts as an exact copy of
an old one (its heatmap and jacobian channels copied), and every weight that reads the per-keypoint
channels of the dense-motion network is shared between the copies (divided by the number of copies; the
copies' mask logits lowered by log(copies), so their softmax shares add up to the old one's). The copies
then produce identical sparse motions, so the dense flow, the mask sums and the occlusion maps are the old
model's, and the new keypoints get gradients from the first step. Training pulls each copy onto its own
landmark (the teacher's keypoint term) and the copies diverge. Not exact: the paper model's spatial
attention averages over all channels, and the copies shift that mean a little.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch

from models import build_model
from models.checkpoint import ReenactModel
from reenact_common.errors import ConfigError


def nearest_parents(canonical: np.ndarray, old_indices: Sequence[int], new_indices: Sequence[int]) -> list[int]:
    """For each new keypoint's landmark, the old keypoint whose landmark is nearest on a canonical mesh."""
    points = np.asarray(canonical, np.float64)
    old = points[list(old_indices)]
    return [int(np.argmin(np.linalg.norm(old - points[i], axis=1))) for i in new_indices]


def grow_keypoints(model: ReenactModel, num_kp: int, parents: Sequence[int]) -> ReenactModel:
    """A new model with num_kp keypoints: the first K are `model`'s, keypoint K + i starts as parents[i]."""
    config = model.config
    old_k = config.num_kp
    parents = [int(p) for p in parents]
    if num_kp - old_k != len(parents) or num_kp <= old_k:
        raise ConfigError(f"growing {old_k} -> {num_kp} keypoints needs {num_kp - old_k} parents, got {len(parents)}")
    if any(not 0 <= p < old_k for p in parents):
        raise ConfigError(f"keypoint parents must be old keypoints 0..{old_k - 1}, got {parents}")
    grown = build_model(config.replace(num_kp=num_kp))
    copies = Counter(parents)
    source_kp = list(range(old_k)) + parents  # new keypoint -> old keypoint it copies
    share = [1.0 / (1 + copies[k]) for k in source_kp]

    grown.kp_detector.load_state_dict(_grow_detector(model.kp_detector.state_dict(), grown.kp_detector.state_dict(),
                                                     source_kp))
    maps = _dense_motion_maps(config, grown, source_kp, share)
    prefix = "dense_motion_network."
    old_state, new_state = model.generator.state_dict(), grown.generator.state_dict()
    state = {}
    for key, target in new_state.items():
        value = old_state[key]
        if value.shape == target.shape:
            state[key] = value.clone()
            continue
        rule = maps.get(key[len(prefix):]) if key.startswith(prefix) else None
        if rule is None:
            raise ConfigError(f"don't know how to grow {key} from {tuple(value.shape)} to {tuple(target.shape)}")
        state[key] = rule(value)
    grown.generator.load_state_dict(state)
    return grown.set_warped_source_blend(config.generator.warped_source_blend)


def _grow_detector(old: dict, new: dict, source_kp: list[int]) -> dict:
    """Heatmap and jacobian output channels copied from each new keypoint's parent."""
    out = {}
    for key, target in new.items():
        value = old[key]
        if value.shape == target.shape:
            out[key] = value.clone()
        elif key.startswith("kp."):
            out[key] = value[source_kp].clone()
        elif key.startswith("jacobian."):
            per_kp = value.view(-1, 4, *value.shape[1:])
            out[key] = per_kp[source_kp].reshape(target.shape).clone()
        else:
            raise ConfigError(f"don't know how to grow kp_detector.{key}")
    return out


def _dense_motion_maps(config, grown: ReenactModel, source_kp: list[int], share: list[float]) -> dict:
    """Rules for the dense-motion weights whose shape depends on the number of keypoints.

    The hourglass input is K+1 blocks (background first) of 1 heatmap + C source channels; its output xi is
    the decoder's block_expansion channels followed by that input again (the last skip connection).
    """
    per_block = config.num_channels + 1
    blocks = [0] + [k + 1 for k in source_kp]  # new block -> old block
    block_share = [1.0] + share
    x_index = [b * per_block + c for b in blocks for c in range(per_block)]
    x_share = [s for s in block_share for _ in range(per_block)]
    width = config.dense_motion.block_expansion
    xi_index = list(range(width)) + [width + i for i in x_index]
    xi_share = [1.0] * width + x_share

    def read(index: list[int], scale: list[float]):
        def rule(weight: torch.Tensor) -> torch.Tensor:
            factor = torch.tensor(scale, dtype=weight.dtype).view(1, -1, *([1] * (weight.dim() - 2)))
            return weight[:, index] * factor
        return rule

    def write(index: list[int]):
        return lambda weight: weight[index].clone()

    def mask_weight(weight: torch.Tensor) -> torch.Tensor:
        return read(xi_index, xi_share)(weight[blocks])

    def mask_bias(bias: torch.Tensor) -> torch.Tensor:
        return bias[blocks] + torch.tensor([0.0] + [math.log(s) for s in share], dtype=bias.dtype)

    return {
        "hourglass.encoder.down_blocks.0.conv.weight": read(x_index, x_share),
        "mask.weight": mask_weight,
        "mask.bias": mask_bias,
        "attention.channel.mlp.0.weight": read(xi_index, xi_share),
        "attention.channel.mlp.2.weight": write(xi_index),
        "occlusion_restoration.heads.0.weight": read(xi_index, xi_share),
        "occlusion_restoration.up_blocks.0.conv.weight": read(xi_index, xi_share),
        "occlusion.weight": read(xi_index, xi_share),
    }
