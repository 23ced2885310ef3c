"""Warped-source blend: where the occlusion map says the avatar is visible, show the avatar itself, warped.

Why: the generator's decoder rebuilds the face from warped features and, small and trained on little
data, decodes it blurred (the identity metric AED is blur-limited: docs/training.md), while the avatar
warped by the same dense motion is sharp and exact in colour. The occlusion map already says where that
warp is valid; outside it (an opening mouth, uncovered background) the decoder's output is kept:

    output = occlusion * warp(avatar, motion) + (1 - occlusion) * prediction

No parameters, nothing tuned; off in FOMM and the paper (`GeneratorConfig.warped_source_blend`).

The warp is not FOMM's visualisation output `deformed`: FOMM resizes the 64-px dense-motion grid to the
image as absolute coordinates with align_corners=False, which scales it by 252/255 about the centre (up to
1.5 px off at the border; L1 0.017 on a still clip). Here the displacement is resized, so an identity
motion warps the avatar onto itself exactly (`warp_full_resolution`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.blocks import make_coordinate_grid


def warp_full_resolution(image: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
    """Backward-warp `image` (B, C, H, W) by a low-resolution sampling grid (B, h, w, 2) in [-1, 1]
    (align_corners=True convention), resizing the grid's displacement, not its absolute coordinates."""
    _, _, height, width = image.shape
    _, h, w, _ = deformation.shape
    if (h, w) != (height, width):
        displacement = (deformation - make_coordinate_grid(h, w, deformation)).permute(0, 3, 1, 2)
        displacement = F.interpolate(displacement, size=(height, width), mode="bilinear", align_corners=True)
        deformation = make_coordinate_grid(height, width, deformation) + displacement.permute(0, 2, 3, 1)
    # Border padding: where the motion samples outside the avatar (a head turned towards the frame edge),
    # the edge colour is a better guess than black (measured: black cost 0.003-0.005 L1 on such frames).
    return F.grid_sample(image, deformation, mode="bilinear", padding_mode="border", align_corners=True)


def blend_warped_source(
    prediction: torch.Tensor, source_image: torch.Tensor, deformation: torch.Tensor, occlusion: torch.Tensor | None
) -> torch.Tensor:
    """prediction, source_image: (B, C, H, W) in [0, 1]; deformation: the dense-motion grid (B, h, w, 2);
    occlusion: (B, 1, h', w') in [0, 1], resized to the image, or None (nothing to blend: prediction)."""
    if occlusion is None:
        return prediction
    if occlusion.shape[2:] != prediction.shape[2:]:
        occlusion = F.interpolate(occlusion, size=prediction.shape[2:], mode="bilinear", align_corners=False)
    warped = warp_full_resolution(source_image, deformation)
    return prediction + occlusion * (warped - prediction)
