"""AppController: the app's state and every user action, with no widgets (tests drive it directly).

Threads (all of the app's: docs/architecture.md, "Threads and processes"):
- UI thread: this object, its signals, `state` and `settings`. Cheap calls only (flags, thread-safe
  pipeline setters). Only this thread writes `state` and `settings`.
- Command thread (`WorkerBridge`): model load / engine build, avatar face detection, opening cameras and
  video files, starting sinks. One at a time, in order; errors become banner messages. Its results reach
  `state` and `settings` through `_update_state` / `_update_settings`, which post them to the UI thread.
- Pipeline thread (`LivePipeline`): capture, tracking, inference, sinks. Its frames reach the UI through
  the bridge's latest-frame slot.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from reenact_app.gui.live import (
    LIVE_SETTINGS, GatedSink, apply_settings, pipeline_config,
)
from reenact_app.gui.outputs import OutputsMixin
from reenact_app.gui.services.avatar_service import AvatarService
from reenact_app.gui.services.engine_service import EngineService, model_label
from reenact_app.gui.services.settings_service import SettingsService
from reenact_app.gui.services.source_service import SourceService
from reenact_app.gui.services.ui import UiPort, UiThread, set_fields
from reenact_app.gui.settings import EXPRESSION_MAX, EXPRESSION_STEP, AppSettings, load_settings
from reenact_app.gui.state import AppState
from reenact_app.gui.worker import FramePacket, WorkerBridge, to_qimage

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 0.25  # status bar refresh rate while frames flow (numbers, not pictures)


class AppController(OutputsMixin, QObject):
    frameReady = Signal(object)  # FramePacket, on the UI thread, latest-frame semantics
    stateChanged = Signal()
    avatarsChanged = Signal()
    settingsChanged = Signal()
    messageRaised = Signal(str, str, str, str, str)  # level, text, fix, action label, action key
    busyChanged = Signal(str)

    def __init__(
        self,
        settings: AppSettings | None = None,
        *,
        persist: bool = True,
        driving: str | None = None,
        avatar: str | None = None,
        model: str | None = None,
        config: str | None = None,
        engine: str | None = None,
        vcam_backend: str | None = None,
        camera_factory=None,
        cameras: list | None = None,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        settings = settings if settings is not None else load_settings()
        if model:
            settings.model_path, settings.model_config = str(model), str(config or "")
        if engine:
            settings.engine = engine
        self._ui_thread = UiThread(self)
        self.settings_service = SettingsService(settings, persist=persist, post=self._on_ui, on_changed=self._settings_applied)
        self.vcam_backend = vcam_backend  # None = the platform's real backend; "reenact-fake" in tests
        self.state = AppState()
        self.bridge = WorkerBridge(self)
        self.bridge.frameReady.connect(self._take_frame)
        self.bridge.busyChanged.connect(self._busy)
        self.bridge.message.connect(lambda level, text, fix: self.raise_message(level, text, fix))
        ui = UiPort(post=self._on_ui, update_state=self._update_state, update_settings=self._update_settings,
                    message=self.raise_message, busy=self.busyChanged.emit)
        self.engines = EngineService(ui, lambda: self.settings, lambda: self._pipeline, lambda: self.state.busy)
        self.avatar_service = AvatarService(ui, [avatar] if avatar else [], pipeline=lambda: self._pipeline,
                                            model_size=lambda: getattr(self.engines.engine, "image_size", None),
                                            on_list_changed=self._avatars_applied)
        self.sources = SourceService(ui, driving=driving, camera_factory=camera_factory, cameras=cameras)
        self._pipeline = None
        self._vcam: GatedSink | None = None
        self._recorder: GatedSink | None = None
        self._recorder_path = ""  # of the recording in progress (command thread)
        self._last_status = 0.0
        self._seen_message_time = time.time()
        self._shut_down = False
        self._housekeeping_timer = QTimer(self)
        self._housekeeping_timer.setInterval(1000)
        self._housekeeping_timer.timeout.connect(self._housekeeping)
        self._housekeeping_timer.start()
        self.state.model_label = model_label(self.settings)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Loads the model, the avatar and the driving source, then starts the pipeline (all off the UI thread)."""
        self.bridge.submit("Looking for cameras", self.sources.find_cameras)
        self.bridge.submit("Loading model", self.engines.load)
        self.bridge.submit("Preparing avatar", self.avatar_service.load_initial, self.avatar_service.initial(self.settings.avatar))
        self.bridge.submit("Opening driving video", self._start_pipeline)

    def shutdown(self, timeout: float = 15.0) -> bool:
        """Stops everything: queued commands dropped, pipeline joined (camera released, recording finished,
        virtual camera closed), command thread joined. Returns True when every thread stopped."""
        if self._shut_down:
            return True
        self._shut_down = True
        self._housekeeping_timer.stop()
        self.bridge.cancel_pending()
        self.engines.cancel()
        ok = self.bridge.stop(timeout)
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.stop(timeout)
            ok = ok and not pipeline.running
        self.engines.close()
        self.state.running = False
        self.settings_service.close()
        log.info("shut down (%s)", "clean" if ok else "threads left running")
        return ok

    @property
    def settings(self) -> AppSettings:
        return self.settings_service.settings

    @property
    def pipeline(self):
        return self._pipeline

    @property
    def _source(self):
        """The driving source the pipeline reads now (None before it starts)."""
        pipeline = self._pipeline
        return None if pipeline is None else pipeline.source

    @property
    def engine(self):
        return self.engines.engine

    @property
    def cameras(self) -> list:
        return self.sources.cameras

    @property
    def avatars(self) -> list[str]:
        return self.avatar_service.avatars

    @property
    def thumbnails(self) -> dict:
        return self.avatar_service.thumbnails

    def idle(self) -> bool:
        """No command queued or running (tests wait for this)."""
        return self.bridge.pending == 0

    # -- messages -------------------------------------------------------------------------------
    def raise_message(self, level: str, text: str, fix: str = "", action: str = "", action_key: str = "") -> None:
        """Shows a banner (through the window); also logged, so headless runs see it."""
        log.log(logging.ERROR if level == "error" else logging.WARNING if level == "warning" else logging.INFO,
                "%s%s", text, f" — {fix}" if fix else "")
        self._on_ui(lambda: setattr(self.state, "last_message", text))
        self.messageRaised.emit(level, text, fix, action, action_key)

    # -- state and settings: owned by the UI thread ------------------------------------------------
    def _on_ui(self, fn) -> None:
        """Runs `fn` on the UI thread: now when called there, else queued behind the events already posted."""
        self._ui_thread.post(fn)

    def _update_state(self, **changes: Any) -> None:
        """Sets AppState fields on the UI thread (posted from other threads, in order) and says so."""

        def apply() -> None:
            set_fields(self.state, changes)
            self.stateChanged.emit()

        self._on_ui(apply)

    def _update_settings(self, **changes: Any) -> None:
        """Sets AppSettings fields on the UI thread (posted from other threads) and saves them soon."""
        self.settings_service.update(**changes)

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

    def _changed(self) -> None:
        self.stateChanged.emit()

    # -- command-thread work ----------------------------------------------------------------------
    def _start_pipeline(self, cameras: list | None = None) -> None:
        from reenact_app.pipeline import LivePipeline

        engine = self.engines.engine
        if engine is None:
            return  # no weights: the banner already says what to do
        if self._pipeline is not None:
            return
        source = self.sources.open(self.settings, cameras)
        pipeline = LivePipeline(source, engine, avatar=self.avatar_service.current, config=pipeline_config(self.settings),
                                on_frame=self._on_pipeline_frame)
        if self.settings.freeze_crop:  # the one live setting PipelineConfig does not carry
            apply_settings(pipeline, self.settings, {"freeze_crop"})
        self._pipeline = pipeline
        if self._shut_down:
            return
        pipeline.start()
        self._update_state(running=True)
        log.info("pipeline running: %s", source.name)

    def _switch_source(self, cameras: list) -> None:
        if self._pipeline is None:
            self._start_pipeline(cameras)
            return
        new = self.sources.open(self.settings, cameras)
        new.start()  # opened here, on the command thread, not between two frames of the pipeline
        self._pipeline.set_source(new)
        self._changed()

    # -- pipeline thread ---------------------------------------------------------------------------
    def _on_pipeline_frame(self, pf) -> None:
        """Runs on the pipeline thread: convert to QImages here so the UI thread only paints."""
        landmarks = pf.landmarks[::3] if pf.landmarks is not None else None
        packet = FramePacket(
            index=pf.index,
            output=to_qimage(pf.output),
            driving=to_qimage(pf.driving) if pf.driving is not None else None,
            face_box=pf.face_box,
            keypoints=landmarks,
            face_found=pf.face_found,
            stats={**pf.stats, "state": pf.state, "latency_ms": pf.latency_ms or pf.stats.get("latency_ms", 0.0)},
        )
        self.bridge.publish(packet)

    # -- UI thread: frames -------------------------------------------------------------------------
    def _take_frame(self) -> None:
        packet = self.bridge.take_frame()
        if packet is None:
            return
        st = self.state
        st.frames_shown += 1
        stats = packet.stats
        st.frames_out = int(stats.get("frames_out", st.frames_out))
        st.fps = float(stats.get("fps", 0.0))
        st.latency_ms = float(stats.get("latency_ms", 0.0))
        st.stage_ms = dict(stats.get("stage_ms", {}))
        st.face_found = packet.face_found
        st.pipeline_state = str(stats.get("state", ""))
        self.frameReady.emit(packet)
        if time.monotonic() - self._last_status >= STATUS_INTERVAL_S:
            self._housekeeping()

    def _housekeeping(self) -> None:
        """Status refresh; runs with the frames and from a 1 s timer (so it also runs when no frame comes)."""
        self._last_status = time.monotonic()
        if self._shut_down:
            return
        st = self.state
        self._check_sinks()
        self._check_pipeline_messages()
        engine = self.engines.engine
        if engine is not None:
            st.engine_label = engine.describe()
            self.engines.show_notice(getattr(engine, "notice", None) or "")  # engines without listeners
        source = self._source
        if source is not None:
            base = st.source_name
            state = source.status.state
            st.source_label = base if state in ("running", "starting") else f"{base}: {state}"
        pipeline = self._pipeline
        if pipeline is not None and st.running and not pipeline.running:
            st.running = False
            self.raise_message("error", f"The video pipeline stopped ({pipeline.stats.state}).",
                               "Check the log; restart the app or switch the driving source.")
        self.stateChanged.emit()

    def _check_sinks(self) -> None:
        """The pipeline drops a sink that fails; reflect that in the buttons and the status bar."""
        if self._vcam is not None and self._vcam.error:
            self._vcam = None
            self.state.vcam_on, self.state.vcam = False, "stopped (error)"
        if self._recorder is not None and self._recorder.error:
            rec, self._recorder = self._recorder, None
            self.state.recording, self.state.recording_path = False, ""
            self.bridge.submit("Finishing recording", rec.detach)

    def _check_pipeline_messages(self) -> None:
        pipeline = self._pipeline
        if pipeline is None:
            return
        try:
            messages = list(pipeline.stats.messages)
        except RuntimeError:  # appended to while copying: read it next time
            return
        for stamp, text in messages:
            if stamp > self._seen_message_time:
                self._seen_message_time = stamp
                self.raise_message("warning", text, _fix_for(text))

    # -- user actions (UI thread) ----------------------------------------------------------------
    def calibrate(self) -> None:
        if self._pipeline is None:
            self.raise_message("info", "Calibration needs a running preview.")
            return
        self._pipeline.calibrate()
        self.raise_message("info", "Calibrated: the current pose is the neutral reference.")

    def redetect(self) -> None:
        if self._pipeline is not None:
            self._pipeline.redetect()

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
        s = self.settings
        p = self._pipeline
        if name in LIVE_SETTINGS:
            if p is not None:
                apply_settings(p, s, {name})
        elif name in ("engine", "avatar_detail"):
            self.bridge.submit("Building engine", self.engines.load)
            self.bridge.submit("Starting pipeline", self._start_pipeline, list(self.cameras))
        elif name == "model_path":
            self.set_model(value, "")
        elif name == "camera_resolution" and self.state.source_kind == "camera":
            self.bridge.submit("Reopening camera", self._switch_source, list(self.cameras))
        elif name == "output_resolution" and self._vcam is not None:
            self.bridge.submit("Restarting virtual camera", self._restart_vcam)
        self.settingsChanged.emit()

    def toggle_option(self, name: str) -> None:
        self.set_option(name, not bool(getattr(self.settings, name)))

    def step_expression(self, steps: int) -> None:
        """The [ and ] keys: expression strength down or up one step."""
        self.set_option("expression", round(min(max(self.settings.expression + steps * EXPRESSION_STEP, 0.0),
                                                EXPRESSION_MAX), 2))

    def set_source(self, kind: str, camera_index: int = -1) -> None:
        self.sources.driving_override = None
        self.settings_service.set("source", kind)
        if kind == "camera" and camera_index >= 0:
            self.settings_service.set("camera_index", camera_index)
        self.bridge.submit("Switching driving source", self._switch_source, list(self.cameras))

    def set_video(self, path: str) -> None:
        self.settings_service.set("video_path", str(path))
        self.set_source("video")

    def set_model(self, path: str, config: str = "") -> None:
        self.settings.model_path, self.settings.model_config = str(path or ""), str(config or "")
        self.state.model_label = model_label(self.settings)
        self.bridge.submit("Loading model", self.engines.load)
        self.bridge.submit("Starting pipeline", self._start_pipeline, list(self.cameras))
        self.settings_service.schedule_save()
        self._changed()

    def reset_settings(self) -> None:
        """Back to defaults (window geometry kept), applied live and saved."""
        old = self.settings_service.reset()
        p = self._pipeline
        if p is not None:
            apply_settings(p, self.settings)
        new = self.settings
        if (old.engine, old.model_path, old.avatar_detail) != (new.engine, new.model_path, new.avatar_detail):
            self.bridge.submit("Loading model", self.engines.load)
        self.settingsChanged.emit()
        self.raise_message("info", "Settings reset to defaults.")

    def save_settings(self) -> None:
        self.settings_service.save()


def _fix_for(text: str) -> str:
    lowered = text.lower()
    if "v4l2loopback" in lowered or "modprobe" in lowered:
        from reenact_app.sinks.virtual_camera import MODPROBE_COMMAND

        return MODPROBE_COMMAND
    if "disk" in lowered or "recording" in lowered:
        return "Free disk space or choose another folder; the call goes on."
    return ""
