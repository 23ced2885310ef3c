"""The dense motion's own output: the avatar warped, no decoder.

Why: evaluations compare the shipped output with "the warp alone" (what the warped-source blend shows
where the avatar is fully visible) to tell the output stage's share of an error from the motion's.
`with_warp_only(model)` returns the same model whose generator predicts that warp.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from models.source_blend import warp_full_resolution


class WarpOnlyGenerator(nn.Module):
    """The generator with its prediction replaced by the avatar warped as the blend warps it."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, source_image, **kwargs) -> dict:
        out = self.generator(source_image, **kwargs)
        return {**out, "prediction": warp_full_resolution(source_image, out["deformation"])}


def with_warp_only(model):
    """A shallow copy of a `models` reenactment model whose output is the warped avatar alone."""
    return dataclasses.replace(model, generator=WarpOnlyGenerator(model.generator))
