"""Warped-source blend: where the occlusion map says the avatar is visible, show the avatar itself, warped.

Why: the generator's decoder rebuilds the face from warped features and, small and trained on little
data, decodes it blurred (the identity metric AED is blur-limited: docs/training-results.md), while the avatar
warped by the same dense motion is sharp and exact in colour. The occlusion map already says where that
warp is valid; outside it (an opening mouth, uncovered background) the decoder's output is kept:

    visibility = min(1, occlusion / occlusion at rest)
    output     = visibility * warp(avatar, motion) + (1 - visibility) * prediction

"At rest" is the avatar driven by its own keypoints (no motion), computed once per avatar with the rest
of the avatar-side work. The occlusion map was trained to mask decoder features, not to be a pixel
blend weight: even at rest it stays at 0.5-0.7 over eyes, nose and mouth, so a plain occlusion blend
mixes the decoder's blur into exactly the features identity lives in, and the avatar held still is not
the avatar. Normalised by its rest value, the map keeps only what motion changes: at rest the output is
the avatar exactly, and where a mouth opens or a head turn uncovers background the decoder takes over.
Measured (experiments/aed_by_motion.py, source_blend_eval.py; docs/training-results.md): chosen on training clips,
then held-out AED 0.210 -> 0.199 at equal or better L1 and AKD.

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

# Guards the division where the rest map is ~0 (the avatar hidden there even unmoved); the shipped maps
# stay far above it.
REST_FLOOR = 1e-3


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


def visibility(occlusion: torch.Tensor, rest_occlusion: torch.Tensor | None) -> torch.Tensor:
    """How much of the warped avatar to show: the occlusion map relative to its value at rest, at most 1
    (the plain occlusion map where no rest map is given)."""
    if rest_occlusion is None:
        return occlusion
    ratio = occlusion / rest_occlusion.clamp(min=REST_FLOOR)
    return torch.where(occlusion >= rest_occlusion, torch.ones_like(ratio), ratio)


def displacement(deformation: torch.Tensor) -> torch.Tensor:
    """The dense-motion grid (B, h, w, 2) minus the identity grid: where each pixel samples the avatar,
    relative to itself, in [-1, 1] units (align_corners=True). Zero for an avatar held still; what the
    app's full-resolution compositor upsamples to warp the avatar at its own resolution."""
    _, h, w, _ = deformation.shape
    return deformation - make_coordinate_grid(h, w, deformation)


def image_visibility(occlusion: torch.Tensor, rest_occlusion: torch.Tensor | None, size) -> torch.Tensor:
    """`visibility` resized to the image size (H, W): the per-pixel weight of the warped avatar."""
    weight = visibility(occlusion, rest_occlusion)
    if tuple(weight.shape[2:]) != tuple(size):
        weight = F.interpolate(weight, size=size, mode="bilinear", align_corners=False)
    return weight


def blend_visible(
    prediction: torch.Tensor, source_image: torch.Tensor, deformation: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """prediction + weight * (warp(avatar) - prediction), weight from `image_visibility`."""
    warped = warp_full_resolution(source_image, deformation)
    return prediction + weight * (warped - prediction)


def blend_warped_source(
    prediction: torch.Tensor, source_image: torch.Tensor, deformation: torch.Tensor, occlusion: torch.Tensor | None,
    rest_occlusion: torch.Tensor | None = None,
) -> torch.Tensor:
    """prediction, source_image: (B, C, H, W) in [0, 1]; deformation: the dense-motion grid (B, h, w, 2);
    occlusion and rest_occlusion (the map for the avatar driven by itself): (B, 1, h', w') in [0, 1],
    resized to the image; occlusion None: nothing to blend, the prediction is returned."""
    if occlusion is None:
        return prediction
    weight = image_visibility(occlusion, rest_occlusion, prediction.shape[2:])
    return blend_visible(prediction, source_image, deformation, weight)
