"""Reading frames from videos and frame folders (one interface for both)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from models.errors import MediaError

VIDEO_EXTS = {".mp4", ".mpg", ".mpeg", ".mov", ".avi", ".mkv", ".webm", ".m4v"}
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() in IMAGE_EXTS for p in path.iterdir())


def frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)


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


def video_fps(path: Path) -> float:
    import cv2

    if path.is_dir():
        return 25.0
    cap = cv2.VideoCapture(str(path))
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    cap.release()
    return fps if fps > 0 else 25.0


def iter_frames(path: Path) -> Iterator[np.ndarray]:
    """BGR uint8 frames of a video file or frame folder, in order (streamed, not held in memory)."""
    import cv2

    if path.is_dir():
        for file in frame_files(path):
            frame = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if frame is None:
                raise MediaError(f"can't read image {file}")
            yield frame
        return
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise MediaError(f"can't open video {path} (unsupported codec or damaged file)")
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            yield frame
    finally:
        cap.release()


def read_video_frames(path: Path, indices: list[int] | None = None) -> list[np.ndarray]:
    """Selected frames (BGR) of a video; whole video when indices is None. Reads sequentially (seeking is unreliable)."""
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
