"""The LivePipeline behind the preview, and its frames on their way to the UI."""

from __future__ import annotations

import logging
from typing import Callable

from reenact_app.gui.live import apply_settings, pipeline_config
from reenact_app.gui.services.ui import UiPort
from reenact_app.gui.settings import AppSettings
from reenact_app.gui.worker import FramePacket, to_qimage

log = logging.getLogger(__name__)

LANDMARK_STRIDE = 3  # the preview draws every third face-mesh landmark


class PipelineService:
    """The LivePipeline behind the preview, and its frames on their way to the UI.

    Threads:
    - command thread: `start` builds and starts the pipeline once there is an engine, and `switch_source`
      hands it a source opened there; it is the only writer of `pipeline` while the app runs (at shutdown
      the UI thread stops it, after the command thread has been joined).
    - UI thread: control calls of the pipeline (calibrate, settings, re-detect): thread-safe, queued and
      applied between two frames.
    - pipeline thread: `on_frame` converts each frame to QImages there, so the UI thread only paints, and
      leaves it in the bridge's latest-frame slot.
    """

    def __init__(self, ui: UiPort, publish: Callable[[FramePacket], None], *, settings: Callable[[], AppSettings],
                 engine: Callable[[], object], avatar: Callable[[], object], open_source: Callable[..., object],
                 closing: Callable[[], bool]):
        self._ui = ui
        self._publish = publish  # into the latest-frame slot
        self._settings = settings
        self._engine = engine
        self._avatar = avatar  # the prepared avatar in use
        self._open_source = open_source  # (settings, cameras) -> FrameSource, not started
        self._closing = closing
        self.pipeline = None

    @property
    def source(self):
        """The driving source the pipeline reads now (None before it starts)."""
        pipeline = self.pipeline
        return None if pipeline is None else pipeline.source

    # -- command thread --------------------------------------------------------------------------------
    def start(self, cameras: list | None = None) -> None:
        """The pipeline on the configured source (`cameras`: see SourceService.open), once there is an
        engine; nothing when it runs already or the app is closing."""
        from reenact_app.pipeline import LivePipeline

        engine = self._engine()
        if engine is None or self.pipeline is not None:
            return  # no weights: the banner already says what to do
        settings = self._settings()
        source = self._open_source(settings, cameras)
        pipeline = LivePipeline(source, engine, avatar=self._avatar(), config=pipeline_config(settings), on_frame=self.on_frame)
        if settings.freeze_crop:  # the one live setting PipelineConfig does not carry
            apply_settings(pipeline, settings, {"freeze_crop"})
        self.pipeline = pipeline
        if self._closing():
            return
        pipeline.start()
        self._ui.update_state(running=True)
        log.info("pipeline running: %s", source.name)

    def switch_source(self, cameras: list | None = None) -> None:
        """The source the settings ask for, opened here (not between two frames of the pipeline), then
        swapped in: sinks stay open."""
        if self.pipeline is None:
            self.start(cameras)
            return
        source = self._open_source(self._settings(), cameras)
        source.start()
        self.pipeline.set_source(source)

    # -- pipeline thread ---------------------------------------------------------------------------------
    def on_frame(self, pf) -> None:
        landmarks = pf.landmarks[::LANDMARK_STRIDE] if pf.landmarks is not None else None
        self._publish(FramePacket(
            index=pf.index,
            output=to_qimage(pf.output),
            driving=to_qimage(pf.driving) if pf.driving is not None else None,
            face_box=pf.face_box,
            keypoints=landmarks,
            face_found=pf.face_found,
            stats={**pf.stats, "state": pf.state, "latency_ms": pf.latency_ms or pf.stats.get("latency_ms", 0.0)},
        ))

    # -- UI thread, at shutdown ----------------------------------------------------------------------------
    def stop(self, timeout: float) -> bool:
        """Stops and joins the pipeline (camera released, sinks closed); True when it stopped."""
        pipeline, self.pipeline = self.pipeline, None
        if pipeline is None:
            return True
        pipeline.stop(timeout)
        return not pipeline.running
