"""Glue between the GUI and the LivePipeline: settings applied in one place, sinks that can be detached.

`pipeline_config` and `apply_settings` are the only path from AppSettings to the pipeline. `GatedSink`
lets the output service stop the virtual camera or a recording synchronously (file finished when the call
returns) and tells it when the pipeline dropped a sink that failed (device vanished, disk full).
Switching the driving source is `LivePipeline.set_source` (no rebuild, sinks stay open).
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from reenact_app.filters import OneEuroConfig
from reenact_app.expression import ExpressionSettings
from reenact_app.gui.settings import AppSettings
from reenact_app.sinks import Sink

log = logging.getLogger(__name__)

# Defaults of the pipeline's smoothing (PipelineConfig / TrackerConfig); the slider's middle (0.5) is these.
KEYPOINT_SMOOTHING = OneEuroConfig(min_cutoff=1.5, beta=0.3)
CROP_SMOOTHING = OneEuroConfig(min_cutoff=0.5, beta=0.5)


def smoothing_configs(strength: float) -> tuple[OneEuroConfig, OneEuroConfig]:
    """Slider 0..1 -> (keypoint, crop) One Euro configs. 0 = off; 0.5 = the measured defaults; higher
    lowers the cut-off (smoother when still, a little more lag)."""
    if strength <= 0.01:
        return OneEuroConfig(enabled=False), OneEuroConfig(enabled=False)
    factor = 0.5 / strength
    kp = OneEuroConfig(KEYPOINT_SMOOTHING.min_cutoff * factor, KEYPOINT_SMOOTHING.beta, KEYPOINT_SMOOTHING.d_cutoff)
    crop = OneEuroConfig(CROP_SMOOTHING.min_cutoff * factor, CROP_SMOOTHING.beta, CROP_SMOOTHING.d_cutoff)
    return kp, crop


def pipeline_options(s: AppSettings) -> dict:
    """The PipelineConfig fields that mirror AppSettings."""
    return {"mirror": s.mirror, "paste_back": s.paste_back, "full_resolution": s.full_resolution}


def expression_settings(s: AppSettings) -> ExpressionSettings:
    """The expression-retargeting settings behind AppSettings.expression."""
    return ExpressionSettings(strength=s.expression)


# The AppSettings fields a running pipeline takes live (no rebuild); `apply_settings` knows each one.
LIVE_SETTINGS = frozenset({"relative", "adapt_scale", "expression", "smoothing", "crop_margin", "freeze_crop",
                           "mirror", "paste_back", "full_resolution"})


def pipeline_config(s: AppSettings):
    """The PipelineConfig a new pipeline starts with; `apply_settings` changes the same fields live."""
    from reenact_app.pipeline import PipelineConfig  # imported late: the window opens before the engine stack
    from reenact_app.tracking import TrackerConfig

    kp, crop = smoothing_configs(s.smoothing)
    config = PipelineConfig(tracker=TrackerConfig(margin=s.crop_margin, smoothing=crop), keypoint_smoothing=kp,
                            stop_when_source_ends=False, **pipeline_options(s))
    config.motion.relative = s.relative
    config.motion.adapt_scale = s.adapt_scale
    config.expression = expression_settings(s)
    return config


def apply_settings(pipeline, s: AppSettings, changed: set[str] | None = None) -> None:
    """Applies AppSettings to a running LivePipeline: the fields in `changed` (None: all of LIVE_SETTINGS).

    The one place where settings reach the pipeline, so a new setting is wired once for start-up,
    a slider move and a reset alike.
    """
    fields = LIVE_SETTINGS if changed is None else LIVE_SETTINGS & set(changed)
    motion = {k: getattr(s, k) for k in ("relative", "adapt_scale") if k in fields}
    if motion:
        pipeline.set_motion(**motion)
    if "expression" in fields:
        pipeline.set_expression(strength=expression_settings(s).strength)
    tracker: dict = {}
    if "smoothing" in fields:
        kp, tracker["smoothing"] = smoothing_configs(s.smoothing)
        pipeline.set_keypoint_smoothing(kp)
    if "crop_margin" in fields:
        tracker["margin"] = s.crop_margin
    if tracker:
        pipeline.update_tracker(**tracker)
    if "freeze_crop" in fields:
        pipeline.freeze_crop(bool(s.freeze_crop))
    options = {k: bool(v) for k, v in pipeline_options(s).items() if k in fields}
    if options:
        pipeline.set_options(**options)


class GatedSink(Sink):
    """Wraps a sink so the command thread can detach and close it at any time.

    The pipeline calls `write` on its thread; `detach` takes the same lock, so a frame is never written
    to a closed sink. A write error is remembered in `error` (the pipeline then drops this sink).
    """

    def __init__(self, inner: Sink):
        self.inner = inner
        self.name = inner.name
        self._lock = threading.Lock()
        self._attached = True
        self.error: str | None = None
        self.frames = 0
        self.started = time.monotonic()

    @property
    def attached(self) -> bool:
        return self._attached

    def open(self) -> None:
        self.inner.open()

    def write(self, image: np.ndarray, driving: np.ndarray | None = None) -> None:
        with self._lock:
            if not self._attached:
                return
            try:
                self.inner.write(image, driving)
            except Exception as exc:
                self.error = str(exc)
                self._attached = False
                raise
            self.frames += 1

    def detach(self) -> None:
        """Stops writing and closes the inner sink (finishes a recording). Safe to call twice."""
        with self._lock:
            self._attached = False
        try:
            self.inner.close()
        except Exception as exc:  # noqa: BLE001 - report, never raise out of a stop button
            log.warning("closing %s failed: %s", self.name, exc)
            self.error = self.error or str(exc)

    def close(self) -> None:
        self.detach()
