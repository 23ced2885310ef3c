"""Real frames for int8 calibration and parity checks.

Why a module of its own: the export command (parity + calibration) and the runtime's on-demand int8
export (reenact_app.engines.onnx_engine.ensure_export) must calibrate on the same kind of input, real face
crops; activation ranges from random images are wrong for faces and cost int8 accuracy.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def bundled_driving_clip() -> Path | None:
    from reenact_common.paths import assets_dir

    folder = assets_dir() / "driving"
    clips = sorted(folder.glob("*.mp4")) if folder.is_dir() else []
    return clips[0] if clips else None


def sample_frames(video: str | Path | None, count: int, size: int, offset: int = 0, step: int = 3) -> list[np.ndarray]:
    """`count` uint8 RGB centre crops (size x size): frames offset, offset+step, ... of `video` (default: the
    bundled driving clip). A different `offset` gives disjoint frames of the same clip (calibrate on one set,
    check parity on the other). Smooth synthetic images only when no video exists at all."""
    from reenact_common.video_io import centre_crop, iter_frames

    video = Path(video) if video is not None else bundled_driving_clip()
    if video is None:
        log.warning("no video for calibration/parity: using synthetic frames (pass a real clip)")
        return synthetic_frames(count, size)
    frames = []
    for index, frame in enumerate(iter_frames(video, offset + count * step)):
        if index >= offset and (index - offset) % step == 0:
            frames.append(centre_crop(frame, size))
    return frames


def synthetic_frames(count: int, size: int) -> list[np.ndarray]:
    import cv2

    base = np.random.default_rng(0).random((8, 8, 3))
    return [(cv2.resize(np.roll(base, i, axis=0), (size, size)) * 255).astype(np.uint8) for i in range(count)]
