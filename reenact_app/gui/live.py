"""Glue between the GUI and the LivePipeline: a source that can be swapped and sinks that can be detached.

Why not rebuild the pipeline to switch camera or video? A rebuild closes every sink: the virtual camera
would vanish from the call for a moment and a recording would be cut. `SwitchableSource` keeps the
pipeline and its sinks running while the driving source behind it changes. `GatedSink` lets the
controller stop the virtual camera or a recording synchronously (file finished when the call returns)
and tells it when the pipeline dropped a sink that failed (device vanished, disk full).
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from reenact_app.capture import FrameSource
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


class SwitchableSource(FrameSource):
    """A FrameSource that re-publishes the frames of an inner source, which can be replaced live.

    Media time keeps increasing across switches (the One Euro filters see no time jump backwards),
    and the inner source's status (running, reconnecting, ended...) is mirrored for the status bar.
    """

    name = "switchable"

    def __init__(self, inner: FrameSource):
        super().__init__()
        self._inner_lock = threading.Lock()
        self._inner = inner
        self._offset = 0.0
        self._last_media = -1.0
        self.name = inner.name
        self.fps = inner.fps

    @property
    def inner(self) -> FrameSource:
        return self._inner

    def switch(self, new: FrameSource) -> FrameSource:
        """Starts `new`, makes it current, stops and returns the old one."""
        new.start()
        with self._inner_lock:
            old, self._inner = self._inner, new
            self._offset = None  # recomputed from the first frame of `new`
            self.name = new.name
            self.fps = new.fps
        old.stop()
        log.info("driving source switched to %s", new.name)
        return old

    def _loop(self) -> None:
        self._inner.start()
        while not self._stop.is_set():
            with self._inner_lock:
                inner = self._inner
            frame = inner.read(timeout=0.1)
            status = inner.status
            if frame is None:
                if status.state != self._status.state or status.message != self._status.message:
                    # "ended" would stop the pipeline; it only ends when the inner source really ended
                    self._set_status(status.state, status.message)
                if inner.ended:
                    self._stop.wait(0.05)  # stay alive: the user may switch to another source
                continue
            with self._inner_lock:
                if inner is not self._inner:
                    continue
                if self._offset is None:
                    self._offset = self._last_media + 1.0 / max(self.fps or 30.0, 1.0) - frame.media_time
                media = frame.media_time + self._offset
                self._last_media = media
            if self._status.state != "running":
                self._set_status("running", inner.status.message or inner.name)
            self._publish(frame.image, media, frame.captured_at)

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        self._inner.stop(timeout)


class GatedSink(Sink):
    """Wraps a sink so the controller can detach and close it from its own thread at any time.

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
