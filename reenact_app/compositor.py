"""Putting the model's square output back into a picture: paste-back and letterboxing.

- `paste_back`: warp the animated crop back into the full avatar image with the inverse of the crop's
  affine transform and blend it through a feathered mask, so a large portrait stays large and sharp
  and no seam shows at the crop border.
- `letterbox`: fit any image into a fixed output size (virtual camera, recording) keeping its aspect.
- `side_by_side`: driver view next to the output, for recordings.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np


@functools.lru_cache(maxsize=16)
def feather_mask(size: int, feather: float = 0.12, shape: str = "rect") -> np.ndarray:
    """float32 (size, size) mask: 1 in the middle, falling smoothly to 0 over `feather`*size at the edges.

    shape "rect" keeps the whole crop (hair and shoulders move too); "ellipse" only the face region.
    """
    mask = np.zeros((size, size), np.float32)
    border = max(1, int(round(feather * size)))
    if shape == "ellipse":
        cv2.ellipse(mask, (size // 2, size // 2), (size // 2 - border, size // 2 - border), 0, 0, 360, 1.0, -1)
    else:
        mask[border:-border, border:-border] = 1.0
    if border > 1:
        k = 2 * border + 1
        mask = cv2.GaussianBlur(mask, (k, k), border / 2.0)
    mask.setflags(write=False)
    return mask


def paste_back(
    image: np.ndarray, crop: np.ndarray, matrix: np.ndarray, feather: float = 0.12, shape: str = "rect"
) -> np.ndarray:
    """Blend `crop` (SxSx3, made from `image` by warpAffine(image, matrix, (S, S))) back into `image`.

    Only the crop's bounding rectangle in `image` is touched, so a 4000 px portrait costs little.
    """
    h, w = image.shape[:2]
    s = crop.shape[0]
    inv = cv2.invertAffineTransform(matrix.astype(np.float64))
    corners = np.array([[0, 0], [s, 0], [0, s], [s, s]], np.float64)
    pts = corners @ inv[:, :2].T + inv[:, 2]
    x0, y0 = np.floor(pts.min(0)).astype(int)
    x1, y1 = np.ceil(pts.max(0)).astype(int)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    out = image.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    roi_inv = inv.copy()
    roi_inv[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(crop, roi_inv, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpAffine(feather_mask(s, feather, shape), roi_inv, size, flags=cv2.INTER_LINEAR, borderValue=0)
    region = out[y0:y1, x0:x1].astype(np.float32)
    blended = region + mask[..., None] * (warped.astype(np.float32) - region)
    out[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return out


def letterbox(image: np.ndarray, width: int, height: int, color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Scale `image` to fit (width, height) keeping its aspect ratio; pad the rest with `color`."""
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    scale = min(width / w, height / h)
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (nw, nh), interpolation=interp)
    out = np.empty((height, width, 3), np.uint8)
    out[:] = color
    x, y = (width - nw) // 2, (height - nh) // 2
    out[y : y + nh, x : x + nw] = resized
    return out


def side_by_side(left: np.ndarray, right: np.ndarray, height: int | None = None) -> np.ndarray:
    """Two images next to each other at the same height (the right one's height by default)."""
    height = height or right.shape[0]

    def fit(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        if h == height:
            return img
        return cv2.resize(img, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_AREA)

    return np.concatenate([fit(left), fit(right)], axis=1)


def blend(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """(1-t)*a + t*b for uint8 images of the same shape (used for the fade to the neutral avatar)."""
    t = float(np.clip(t, 0.0, 1.0))
    if t <= 0:
        return a
    if t >= 1:
        return b
    return cv2.addWeighted(a, 1.0 - t, b, t, 0.0)
