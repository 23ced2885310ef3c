"""One Euro filter (Casiez, Roussel, Vogel, CHI 2012) for crop boxes and keypoints.

Why One Euro: a fixed low-pass either shakes when the face is still or lags when it moves. One Euro
adapts its cut-off to the speed of the signal: a low cut-off (strong smoothing) while still, a high
one (little lag) while moving. Time is passed explicitly (seconds), so a video read as fast as
possible is filtered exactly as it would be in real time.

    f = OneEuroFilter(min_cutoff=1.0, beta=0.05)
    y = f(x, t)          # x: float or numpy array (any shape), t: seconds
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class OneEuroConfig:
    """min_cutoff (Hz): smoothing while still (lower = smoother). beta: how fast the cut-off rises
    with speed (higher = less lag). d_cutoff (Hz): cut-off for the speed estimate."""

    min_cutoff: float = 1.0
    beta: float = 0.05
    d_cutoff: float = 1.0
    enabled: bool = True


def _alpha(cutoff: float | np.ndarray, dt: float) -> float | np.ndarray:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Element-wise One Euro filter over a scalar or an array of fixed shape."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0, enabled: bool = True):
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.enabled = enabled
        self.reset()

    @classmethod
    def from_config(cls, config: OneEuroConfig) -> "OneEuroFilter":
        return cls(config.min_cutoff, config.beta, config.d_cutoff, config.enabled)

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @property
    def initialised(self) -> bool:
        return self._x is not None

    def __call__(self, x, t: float):
        value = np.asarray(x, dtype=np.float64)
        if not self.enabled:
            return x
        if self._x is None or self._x.shape != value.shape:
            self._x, self._dx, self._t = value.copy(), np.zeros_like(value), float(t)
            return self._out(self._x, x)
        dt = float(t) - self._t
        if dt <= 0:  # repeated or out-of-order timestamp: assume one frame at 30 fps
            dt = 1.0 / 30.0
        self._t = float(t)
        dx = (value - self._x) / dt
        self._dx = self._dx + _alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        self._x = self._x + _alpha(cutoff, dt) * (value - self._x)
        return self._out(self._x, x)

    @staticmethod
    def _out(state: np.ndarray, like):
        if np.isscalar(like) or np.ndim(like) == 0:
            return float(state)
        return state.astype(np.asarray(like).dtype if np.asarray(like).dtype.kind == "f" else np.float64)


def jitter(track: np.ndarray, scale: float | np.ndarray = 1.0) -> float:
    """Jitter of a (T, D) trajectory: RMS of its second difference (frame-to-frame acceleration),
    divided by `scale` (e.g. the face size, giving a fraction). Slow, smooth motion scores ~0 while
    frame-to-frame noise of std s scores about 2.45*s, so it measures shake, not movement."""
    a = np.asarray(track, np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if len(a) < 3:
        return 0.0
    d2 = a[2:] - 2 * a[1:-1] + a[:-2]
    s = np.asarray(scale, np.float64)
    if s.ndim == 1 and len(s) == len(a):
        s = s[1:-1, None]
    return float(np.sqrt(np.mean((d2 / s) ** 2)))


def lag_frames(raw: np.ndarray, smoothed: np.ndarray, max_lag: int = 15) -> float:
    """How many frames `smoothed` trails `raw`: the shift L minimising mean |smoothed[t] - raw[t-L]|^2,
    refined to a fraction of a frame by a parabola through the three best shifts."""
    r = np.asarray(raw, np.float64).reshape(len(raw), -1)
    s = np.asarray(smoothed, np.float64).reshape(len(smoothed), -1)
    errs = []
    for lag in range(0, max_lag + 1):
        errs.append(np.mean((s[lag + max_lag :] - r[max_lag : len(r) - lag]) ** 2) if lag else np.mean((s[max_lag:] - r[max_lag:]) ** 2))
    errs = np.asarray(errs)
    k = int(np.argmin(errs))
    if 0 < k < len(errs) - 1:
        e0, e1, e2 = errs[k - 1], errs[k], errs[k + 1]
        den = e0 - 2 * e1 + e2
        if den > 0:
            return float(k + 0.5 * (e0 - e2) / den)
    return float(k)
