"""Cross-identity pairs: another person drives the source, supervised by landmark motion, not pixels.

Same-clip pairs teach reconstruction, but at inference the driver is someone else, seen relative to their
own neutral frame. On a cross-identity pair (source of person A, driving and neutral frames of person B)
there is no target image; the target is geometric: A's landmarks moved by B's landmark motion since B's
neutral frame, scaled by the ratio of face sizes (the classical mesh-warp target). The generator, driven
the way the app drives it (relative keypoints, movement scaled), must pull each of those target points
back to A's landmark (the teacher's motion term) and its keypoint jacobians must match the local affine
fits of that motion.
"""

from __future__ import annotations

import torch

from models.blocks import inverse_2x2

EYE_CORNERS = (33, 263)  # mediapipe mesh: outer eye corners, the face-size measure
SCALE_RANGE = (0.5, 2.0)  # face-size ratios outside this are landmark failures, not faces


def face_size(landmarks: torch.Tensor) -> torch.Tensor:
    """(B, 478, 2) -> (B,) distance between the outer eye corners."""
    return (landmarks[:, EYE_CORNERS[0]] - landmarks[:, EYE_CORNERS[1]]).norm(dim=-1)


def movement_scale(source_landmarks: torch.Tensor, neutral_landmarks: torch.Tensor) -> torch.Tensor:
    """(B,) source face size over the driver's neutral face size (1 where the neutral frame is the source)."""
    ratio = face_size(source_landmarks) / face_size(neutral_landmarks).clamp(min=1e-6)
    return ratio.clamp(*SCALE_RANGE)


def relative_keypoints(kp_source: dict, kp_driving: dict, kp_neutral: dict, scale: torch.Tensor) -> dict:
    """The app's relative motion: source keypoints moved by the driver's keypoint motion since its neutral frame."""
    value = kp_source["value"] + scale.view(-1, 1, 1) * (kp_driving["value"] - kp_neutral["value"])
    out = {"value": value}
    if "jacobian" in kp_driving:
        out["jacobian"] = kp_driving["jacobian"] @ inverse_2x2(kp_neutral["jacobian"]) @ kp_source["jacobian"]
    return out


def landmark_motion_target(source_landmarks: torch.Tensor, driving_landmarks: torch.Tensor,
                           neutral_landmarks: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Where the source's landmarks go in the output: moved by the driver's landmark motion, scaled."""
    return source_landmarks + scale.view(-1, 1, 1) * (driving_landmarks - neutral_landmarks)


def cross_identity_motion(batch: dict[str, torch.Tensor], kp_source: dict, kp_driving: dict,
                          detect) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Keypoints that drive the generator, the landmark targets of the motion term, and its found mask.

    Same-clip rows keep the absolute driving keypoints and landmarks (FOMM training); cross rows get the
    relative ones. `detect` (the keypoint detector) runs on every row's neutral frame, whether or not the
    batch has cross rows: under DDP with SyncBatchNorm every rank must make the same calls."""
    cross = batch["cross"]
    kp_neutral = detect(batch["driving_neutral"])
    source_lm, driving_lm = batch["source_landmarks"], batch["driving_landmarks"]
    neutral_lm = batch["driving_neutral_landmarks"]
    scale = torch.where(cross, movement_scale(source_lm, neutral_lm), torch.ones_like(cross, dtype=source_lm.dtype))
    relative = relative_keypoints(kp_source, kp_driving, kp_neutral, scale)
    kp_motion = {k: torch.where(cross.view(-1, *([1] * (v.dim() - 1))), relative[k], kp_driving[k])
                 for k, v in kp_driving.items()}
    target = torch.where(cross.view(-1, 1, 1), landmark_motion_target(source_lm, driving_lm, neutral_lm, scale),
                         driving_lm)
    found = batch["source_found"] & batch["driving_found"] & (batch["driving_neutral_found"] | ~cross)
    return kp_motion, target, found
