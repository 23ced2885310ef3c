"""The cross-identity frame strip: driver frames on top, one row per avatar below, columns at the moments
that matter (the neutral first frame, the widest mouth openings, the blinks), so "does the avatar open
the mouth and blink with the driver?" is answered at a glance."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np


def pick_columns(mouth: np.ndarray, eyes: np.ndarray, count: int = 6, min_gap: int = 3) -> list[int]:
    """Frame indices for the strip: frame 0 (the calibrated neutral), then alternately the widest mouth
    opening and the smallest eye opening not yet near a chosen frame (`min_gap` frames apart), in time order."""
    mouth, eyes = np.asarray(mouth, np.float64), np.asarray(eyes, np.float64)
    total = len(mouth)
    chosen = [0]
    orders = [list(np.argsort(-mouth)), list(np.argsort(eyes))]
    turn = 0
    while len(chosen) < min(count, total) and any(orders):
        order = orders[turn % 2] or orders[(turn + 1) % 2]
        while order:
            index = int(order.pop(0))
            if all(abs(index - c) >= min_gap for c in chosen):
                chosen.append(index)
                break
        turn += 1
    if len(chosen) < min(count, total):  # short clip: relax the spacing
        chosen += [i for i in range(total) if i not in chosen][: min(count, total) - len(chosen)]
    return sorted(chosen)


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = tile.copy()
    scale = tile.shape[0] / 384.0
    for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(tile, text, (4, int(16 * tile.shape[0] / 192)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour,
                    thickness, cv2.LINE_AA)
    return tile


def render_strip(rows: Sequence[tuple[str, Sequence[np.ndarray]]], columns: Sequence[int], tile: int = 192) -> np.ndarray:
    """rows: (label, frames uint8 RGB) each; the frames at `columns`, resized to `tile`, label on the first."""
    lines = []
    for label, frames in rows:
        tiles = [cv2.resize(frames[i], (tile, tile), interpolation=cv2.INTER_AREA) for i in columns]
        tiles[0] = _label(tiles[0], label)
        lines.append(np.concatenate(tiles, axis=1))
    return np.concatenate(lines, axis=0)


def write_strip(path: str | Path, image_rgb: np.ndarray) -> None:
    """JPEG (or PNG by suffix); the folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88]):
        raise OSError(f"can't write {path}: unsupported suffix or unwritable folder")
