"""AppController: the app's signals and every user action, with no widgets (tests drive it directly).

A thin composition of services with one job and one owner each (gui/services/: settings, engine,
avatars, sources, pipeline, outputs, status; each class says which thread owns what). User actions run
on the UI thread, the only writer of `state` and `settings`; slow work goes to the command thread
(`WorkerBridge`), which posts its results back (`UiThread.post`). docs/architecture.md, "Threads and
processes", has every thread.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from reenact_app.gui.live import LIVE_SETTINGS, apply_settings
from reenact_app.gui.services.avatar_service import AvatarService
from reenact_app.gui.services.engine_service import EngineService, model_label
from reenact_app.gui.services.output_service import OutputService
from reenact_app.gui.services.pipeline_service import PipelineService
from reenact_app.gui.services.settings_service import SettingsService
from reenact_app.gui.services.source_service import SourceService
from reenact_app.gui.services.status_service import StatusService
from reenact_app.gui.services.ui import UiPort, UiThread, set_fields
from reenact_app.gui.settings import EXPRESSION_MAX, EXPRESSION_STEP, AppSettings, load_settings
from reenact_app.gui.state import AppState
from reenact_app.gui.worker import WorkerBridge

log = logging.getLogger(__name__)

ENGINE_SETTINGS = ("engine", "model_path", "avatar_detail")  # a change rebuilds the engine


class AppController(QObject):
    frameReady = Signal(object)  # FramePacket, on the UI thread, latest-frame semantics
    stateChanged = Signal()
    avatarsChanged = Signal()
    settingsChanged = Signal()
    messageRaised = Signal(str, str, str, str, str)  # level, text, fix, action label, action key
    busyChanged = Signal(str)

    def __init__(self, settings: AppSettings | None = None, *, persist: bool = True, driving: str | None = None,
                 avatar: str | None = None, model: str | None = None, config: str | None = None,
                 engine: str | None = None, vcam_backend: str | None = None, camera_factory=None,
                 cameras: list | None = None, parent: QObject | None = None):
        super().__init__(parent)
        settings = settings if settings is not None else load_settings()
        if model:
            settings.model_path, settings.model_config = str(model), str(config or "")
        if engine:
            settings.engine = engine
        self.state = AppState(model_label=model_label(settings))
        self._shut_down = False
        self._ui_thread = UiThread(self)
        ui = UiPort(post=self._ui_thread.post, update_state=self._update_state, message=self.raise_message,
                    update_settings=lambda **changes: self.settings_service.update(**changes),
                    busy=self.busyChanged.emit)
        self.bridge = WorkerBridge(self)
        self.settings_service = SettingsService(settings, persist=persist, post=ui.post, on_changed=self._settings_applied)
        self.live = PipelineService(ui, self.bridge.publish, settings=lambda: self.settings, engine=lambda: self.engines.engine,
                                    avatar=lambda: self.avatar_service.current, open_source=lambda *a: self.sources.open(*a),
                                    closing=lambda: self._shut_down)
        self.engines = EngineService(ui, lambda: self.settings, lambda: self.live.pipeline, lambda: self.state.busy)
        self.avatar_service = AvatarService(ui, [avatar] if avatar else [], pipeline=lambda: self.live.pipeline,
                                            model_size=lambda: getattr(self.engines.engine, "image_size", None),
                                            on_list_changed=self._avatars_applied)
        self.sources = SourceService(ui, driving=driving, camera_factory=camera_factory, cameras=cameras)
        self.outputs = OutputService(ui, lambda: self.settings, lambda: self.live.pipeline, vcam_backend)
        self.status = StatusService(ui, lambda: self.state, live=self.live, engines=self.engines, outputs=self.outputs,
                                    submit=self.bridge.submit, on_frame=self.frameReady.emit,
                                    on_changed=self.stateChanged.emit)
        self.bridge.frameReady.connect(lambda: self.status.take_frame(self.bridge.take_frame()))
        self.bridge.busyChanged.connect(self._busy)
        self.bridge.message.connect(lambda level, text, fix: self.raise_message(level, text, fix))

    # -- what widgets, tests and the screenshot mode read (each from the service that owns it) ----------
    settings = property(lambda self: self.settings_service.settings)
    pipeline = property(lambda self: self.live.pipeline)
    engine = property(lambda self: self.engines.engine)
    avatars = property(lambda self: self.avatar_service.avatars)
    thumbnails = property(lambda self: self.avatar_service.thumbnails)
    cameras = property(lambda self: self.sources.cameras)

    def idle(self) -> bool:
        """No command queued or running, and the results they posted applied (tests wait for this)."""
        return self.bridge.pending == 0 and self._ui_thread.pending == 0

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Loads the model, the avatar and the driving source, then starts the pipeline (all off the UI thread)."""
        self.bridge.submit("Looking for cameras", self.sources.find_cameras)
        self.bridge.submit("Loading model", self.engines.load)
        self.bridge.submit("Preparing avatar", self.avatar_service.load_initial, self.avatar_service.initial(self.settings.avatar))
        self.bridge.submit("Opening driving video", self.live.start)

    def shutdown(self, timeout: float = 15.0) -> bool:
        """Stops everything: queued commands dropped, pipeline joined (camera released, recording finished,
        virtual camera closed), command thread joined. Returns True when every thread stopped."""
        if self._shut_down:
            return True
        self._shut_down = True
        self.status.stop()
        self.bridge.cancel_pending()
        self.engines.cancel()
        ok = self.bridge.stop(timeout)
        ok = self.live.stop(timeout) and ok
        self.engines.close()
        self.state.running = False
        self.settings_service.close()
        log.info("shut down (%s)", "clean" if ok else "threads left running")
        return ok

    # -- messages and the UI thread's state -------------------------------------------------------------
    def raise_message(self, level: str, text: str, fix: str = "", action: str = "", action_key: str = "") -> None:
        """Shows a banner (through the window); also logged, so headless runs see it. Any thread."""
        log.log(logging.ERROR if level == "error" else logging.WARNING if level == "warning" else logging.INFO,
                "%s%s", text, f" — {fix}" if fix else "")
        self._ui_thread.post(lambda: setattr(self.state, "last_message", text))
        self.messageRaised.emit(level, text, fix, action, action_key)

    def _update_state(self, **changes: Any) -> None:
        """Sets AppState fields on the UI thread (posted from other threads, in order) and says so."""

        def apply() -> None:
            set_fields(self.state, changes)
            self.stateChanged.emit()

        self._ui_thread.post(apply)

    def _settings_applied(self) -> None:
        self.state.model_label = model_label(self.settings)
        self.settingsChanged.emit()
        self.stateChanged.emit()

    def _avatars_applied(self) -> None:
        self.state.avatar_index = self.avatar_service.index_of(self.state.avatar_path)
        self.avatarsChanged.emit()

    def _busy(self, text: str) -> None:
        self.state.busy = text
        self.busyChanged.emit(text)
        self.stateChanged.emit()

    # -- user actions (UI thread) --------------------------------------------------------------------------
    def calibrate(self) -> None:
        if self.pipeline is None:
            self.raise_message("info", "Calibration needs a running preview.")
            return
        self.pipeline.calibrate()
        self.raise_message("info", "Calibrated: the current pose is the neutral reference.")

    def redetect(self) -> None:
        if self.pipeline is not None:
            self.pipeline.redetect()

    def select_avatar(self, index: int) -> None:
        """Latest wins: holding or hammering the number keys queues at most one avatar load."""
        if self.avatar_service.want(index):
            self.bridge.submit("Loading avatar", self.avatar_service.load_wanted)

    def accept_center_crop(self) -> None:
        pending = self.avatar_service.pending
        if pending is not None:
            path, prepared = pending
            self.bridge.submit("Loading avatar", self.avatar_service.load, path, True, prepared)

    def add_avatars(self, paths: list[str]) -> None:
        self.bridge.submit("Adding avatar", self.avatar_service.add, list(paths))

    def set_option(self, name: str, value: Any) -> None:
        """One AppSettings field changed: store it, apply it live, save soon."""
        if not self.settings_service.set(name, value):
            return
        if name in LIVE_SETTINGS:
            if self.pipeline is not None:
                apply_settings(self.pipeline, self.settings, {name})
        elif name == "model_path":
            self.set_model(value, "")
        elif name in ENGINE_SETTINGS:
            self._rebuild_engine()
        elif name == "camera_resolution" and self.state.source_kind == "camera":
            self.bridge.submit("Reopening camera", self.live.switch_source, list(self.cameras))
        elif name == "output_resolution" and self.outputs.vcam is not None:
            self.bridge.submit("Restarting virtual camera", self.outputs.restart_vcam)
        self.settingsChanged.emit()

    def toggle_option(self, name: str) -> None:
        self.set_option(name, not bool(getattr(self.settings, name)))

    def step_expression(self, steps: int) -> None:
        """The [ and ] keys: expression strength down or up one step."""
        value = min(max(self.settings.expression + steps * EXPRESSION_STEP, 0.0), EXPRESSION_MAX)
        self.set_option("expression", round(value, 2))

    def set_source(self, kind: str, camera_index: int = -1) -> None:
        self.sources.driving_override = None
        self.settings_service.set("source", kind)
        if kind == "camera" and camera_index >= 0:
            self.settings_service.set("camera_index", camera_index)
        self.bridge.submit("Switching driving source", self.live.switch_source, list(self.cameras))

    def set_video(self, path: str) -> None:
        self.settings_service.set("video_path", str(path))
        self.set_source("video")

    def set_model(self, path: str, config: str = "") -> None:
        self.settings.model_path, self.settings.model_config = str(path or ""), str(config or "")
        self.settings_service.schedule_save()
        self.state.model_label = model_label(self.settings)
        self._rebuild_engine()
        self.stateChanged.emit()

    def _rebuild_engine(self) -> None:
        self.bridge.submit("Loading model", self.engines.load)
        self.bridge.submit("Starting pipeline", self.live.start, list(self.cameras))

    def reset_settings(self) -> None:
        """Back to defaults (window geometry kept), applied live and saved."""
        old = self.settings_service.reset()
        if self.pipeline is not None:
            apply_settings(self.pipeline, self.settings)
        if any(getattr(old, name) != getattr(self.settings, name) for name in ENGINE_SETTINGS):
            self.bridge.submit("Loading model", self.engines.load)
        self.settingsChanged.emit()
        self.raise_message("info", "Settings reset to defaults.")

    def start_virtual_camera(self) -> None:
        self.bridge.submit("Starting virtual camera", self.outputs.start_vcam)

    def stop_virtual_camera(self) -> None:
        self.bridge.submit("Stopping virtual camera", self.outputs.stop_vcam)

    def start_recording(self, path: str | Path | None = None) -> None:
        self.bridge.submit("Starting recording", self.outputs.start_recording, str(path or self.outputs.default_recording_path()))

    def stop_recording(self) -> None:
        self.bridge.submit("Finishing recording", self.outputs.stop_recording)
