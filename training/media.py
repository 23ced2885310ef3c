"""Training sources: find videos and frame folders, read selected frames (decoding is reenact_common.video_io)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reenact_common.errors import MediaError
from reenact_common.video_io import VIDEO_EXTS, is_frame_folder, iter_frames


def find_sources(paths: list[Path]) -> list[Path]:
    """Videos and frame folders under the given paths, sorted, each once."""
    found: set[Path] = set()
    for path in paths:
        if not path.exists():
            raise MediaError(f"source not found: {path}")
        if path.is_file():
            if path.suffix.lower() in VIDEO_EXTS:
                found.add(path)
            continue
        if is_frame_folder(path):
            found.add(path)
        for child in path.rglob("*"):
            if child.is_file() and child.suffix.lower() in VIDEO_EXTS:
                found.add(child)
            elif child.is_dir() and is_frame_folder(child):
                found.add(child)
    return sorted(found)


def read_video_frames(path: Path, indices: list[int] | None = None) -> list[np.ndarray]:
    """Selected frames (uint8 RGB) of a video; whole video when indices is None. Reads sequentially (seeking is unreliable)."""
    wanted = None if indices is None else set(indices)
    frames: dict[int, np.ndarray] = {}
    for i, frame in enumerate(iter_frames(path)):
        if wanted is None or i in wanted:
            frames[i] = frame
        if wanted is not None and len(frames) == len(wanted):
            break
    if indices is None:
        return [frames[i] for i in sorted(frames)]
    missing = [i for i in indices if i not in frames]
    if missing:
        raise MediaError(f"{path}: frames {missing[:5]} not readable")
    return [frames[i] for i in indices]
