"""What the status bar and the banners say about the running call."""

from __future__ import annotations

import logging
import time
from typing import Callable

from PySide6.QtCore import QTimer

from reenact_app.gui.services.engine_service import EngineService
from reenact_app.gui.services.output_service import OutputService
from reenact_app.gui.services.pipeline_service import PipelineService
from reenact_app.gui.services.ui import UiPort
from reenact_app.gui.state import AppState

log = logging.getLogger(__name__)

STATUS_INTERVAL_S = 0.25  # status refresh while frames flow (numbers, not pictures)
HOUSEKEEPING_MS = 1000


class StatusService:
    """What the status bar and the banners say about the running call.

    Threads: UI thread only. It takes the newest frame from the bridge's slot into AppState (fps, latency,
    face found) and runs a housekeeping pass (every second from a timer, so it also runs when no frame
    comes, and with the frames at most every STATUS_INTERVAL_S) that reads what the other threads
    publish: the pipeline's stats and messages, the source's status, the engine's description and fallback
    notice, sinks the pipeline dropped.
    """

    def __init__(self, ui: UiPort, state: Callable[[], AppState], *, live: PipelineService, engines: EngineService,
                 outputs: OutputService, submit: Callable[..., None], on_frame: Callable[[object], None],
                 on_changed: Callable[[], None]):
        self._ui = ui
        self._state = state
        self._live = live
        self._engines = engines
        self._outputs = outputs
        self._submit = submit  # queues work on the command thread
        self._on_frame = on_frame  # the packet, for the view
        self._on_changed = on_changed  # stateChanged
        self._last_status = 0.0
        self._seen_message_time = time.time()
        self._stopped = False
        self._timer = QTimer()
        self._timer.setInterval(HOUSEKEEPING_MS)
        self._timer.timeout.connect(self.housekeeping)
        self._timer.start()

    def take_frame(self, packet) -> None:
        if packet is None:
            return
        st = self._state()
        st.frames_shown += 1
        stats = packet.stats
        st.frames_out = int(stats.get("frames_out", st.frames_out))
        st.fps = float(stats.get("fps", 0.0))
        st.latency_ms = float(stats.get("latency_ms", 0.0))
        st.stage_ms = dict(stats.get("stage_ms", {}))
        st.face_found = packet.face_found
        st.pipeline_state = str(stats.get("state", ""))
        self._on_frame(packet)
        if time.monotonic() - self._last_status >= STATUS_INTERVAL_S:
            self.housekeeping()

    def housekeeping(self) -> None:
        self._last_status = time.monotonic()
        if self._stopped:
            return
        st = self._state()
        for name, value in self._outputs.check_failures(self._submit).items():
            setattr(st, name, value)
        self._check_pipeline_messages()
        engine = self._engines.engine
        if engine is not None:
            st.engine_label = engine.describe()
            self._engines.show_notice(getattr(engine, "notice", None) or "")  # engines without listeners
        source = self._live.source
        if source is not None:
            state = source.status.state
            st.source_label = st.source_name if state in ("running", "starting") else f"{st.source_name}: {state}"
        pipeline = self._live.pipeline
        if pipeline is not None and st.running and not pipeline.running:
            st.running = False
            self._ui.message("error", f"The video pipeline stopped ({pipeline.stats.state}).",
                             "Check the log; restart the app or switch the driving source.")
        self._on_changed()

    def _check_pipeline_messages(self) -> None:
        pipeline = self._live.pipeline
        if pipeline is None:
            return
        try:
            messages = list(pipeline.stats.messages)
        except RuntimeError:  # appended to while copying: read it next time
            return
        for stamp, text in messages:
            if stamp > self._seen_message_time:
                self._seen_message_time = stamp
                self._ui.message("warning", text, fix_for(text))

    def stop(self) -> None:
        self._stopped = True
        self._timer.stop()


def fix_for(text: str) -> str:
    """The fix a pipeline message needs (it knows only what went wrong)."""
    lowered = text.lower()
    if "v4l2loopback" in lowered or "modprobe" in lowered:
        from reenact_app.sinks.virtual_camera import MODPROBE_COMMAND

        return MODPROBE_COMMAND
    if "disk" in lowered or "recording" in lowered:
        return "Free disk space or choose another folder; the call goes on."
    return ""
