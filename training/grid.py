"""Sample grids: one row per sample -- source (keypoints), driving (keypoints), source warped by the dense
motion, prediction, occlusion map(s) at each scale. The quickest way to see keypoint collapse or a dead
occlusion map, which the losses alone do not show."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

_COLORS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)]


def _to_rgb(image: torch.Tensor, size: int) -> np.ndarray:
    import cv2

    x = image.detach().float().cpu().clamp(0, 1)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    arr = (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    if arr.shape[0] != size:
        arr = cv2.resize(arr, (size, size), interpolation=cv2.INTER_NEAREST if arr.shape[0] < size else cv2.INTER_AREA)
    return np.ascontiguousarray(arr)


def draw_keypoints(image: np.ndarray, kp: torch.Tensor) -> np.ndarray:
    """kp (K, 2) in [-1, 1] (align_corners=True) drawn as coloured dots."""
    import cv2

    out = image.copy()
    size = out.shape[0]
    radius = max(2, size // 64)
    for k, (x, y) in enumerate(kp.detach().float().cpu().numpy()):
        px, py = (x + 1) / 2 * (size - 1), (y + 1) / 2 * (size - 1)
        cv2.circle(out, (int(round(px)), int(round(py))), radius, _COLORS[k % len(_COLORS)], -1, cv2.LINE_AA)
    return out


def make_grid(batch: dict, kp_source: dict, kp_driving: dict, generated: dict, rows: int = 4) -> np.ndarray:
    """RGB uint8 image; columns: source+kp, driving+kp, deformed, prediction, occlusion map(s)."""
    size = batch["source"].shape[-1]
    occlusion = generated.get("occlusion_map")
    maps = [] if occlusion is None else (list(occlusion) if isinstance(occlusion, (list, tuple)) else [occlusion])
    lines = []
    for i in range(min(rows, batch["source"].shape[0])):
        cells = [
            draw_keypoints(_to_rgb(batch["source"][i], size), kp_source["value"][i]),
            draw_keypoints(_to_rgb(batch["driving"][i], size), kp_driving["value"][i]),
            _to_rgb(generated["deformed"][i], size),
            _to_rgb(generated["prediction"][i], size),
        ]
        cells += [_to_rgb(m[i], size) for m in maps]
        lines.append(np.concatenate(cells, axis=1))
    return np.concatenate(lines, axis=0)


def save_grid(path: str | Path, grid: np.ndarray) -> Path:
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return path
