"""The call's outputs, the virtual camera and the recording."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

from reenact_app.gui.live import GatedSink
from reenact_app.gui.services.ui import UiPort
from reenact_app.gui.settings import AppSettings, parse_resolution
from reenact_common.errors import ReenactError

log = logging.getLogger(__name__)

DEFAULT_OUTPUT_SIZE = (640, 480)


class OutputService:
    """The call's outputs, the virtual camera and the recording.

    Both are pipeline sinks wrapped in a GatedSink. Threads:
    - command thread: starts and stops them and is the only writer of the sinks in use: opening a device
      or finishing an mp4 never runs on the UI thread, and a stop returns only when the device is released /
      the file is complete.
    - UI thread: `check_failures` (housekeeping) sees a sink the pipeline dropped after an error; the
      command thread lets go of it.
    - pipeline thread: writes frames into the sinks (through GatedSink, which a stop closes under its lock).
    - `vcam_backend`: set on the UI thread (tests pick the fake one), read by the command thread.
    """

    def __init__(self, ui: UiPort, settings: Callable[[], AppSettings], pipeline: Callable[[], object],
                 vcam_backend: str | None = None):
        self._ui = ui
        self._settings = settings
        self._pipeline = pipeline
        self.vcam_backend = vcam_backend  # None = the platform's real backend; "reenact-fake" in tests
        self.vcam: GatedSink | None = None
        self.recorder: GatedSink | None = None
        self._recorder_path = ""
        self._failures_seen: list[GatedSink] = []  # UI thread: sinks whose failure was already shown

    def _source_fps(self, default: float) -> float:
        pipeline = self._pipeline()
        source = pipeline.source if pipeline is not None else None
        return source.fps if source is not None and source.fps else default

    # -- command thread: virtual camera ----------------------------------------------------------------
    def start_vcam(self) -> None:
        from reenact_app.sinks import VirtualCamera, VirtualCameraConfig
        from reenact_common.errors import VirtualCameraError

        if self.vcam is not None:
            return
        pipeline = self._pipeline()
        if pipeline is None:
            self._ui.update_state(vcam_on=False)
            self._ui.message("warning", "The virtual camera needs a running preview (load a model first).")
            return
        w, h = parse_resolution(self._settings().output_resolution) or DEFAULT_OUTPUT_SIZE
        config = VirtualCameraConfig(w, h, self._source_fps(30.0), backend=self.vcam_backend, steady=True)
        sink = GatedSink(VirtualCamera(config))
        try:
            pipeline.add_sink(sink)
        except VirtualCameraError as exc:
            first, _, rest = str(exc).partition("\n")
            self._ui.update_state(vcam_on=False, vcam="unavailable")
            self._ui.message("error", first, rest.strip())
            return
        self.vcam = sink
        device = sink.inner.device or ""
        self._ui.update_state(vcam_on=True, vcam_device=device, vcam=f"on {device} {w}x{h}".strip())

    def stop_vcam(self) -> None:
        sink, self.vcam = self.vcam, None
        if sink is not None:
            sink.detach()
            pipeline = self._pipeline()
            if pipeline is not None:
                pipeline.remove_sink(sink)
        self._ui.update_state(vcam_on=False, vcam="off")

    def restart_vcam(self) -> None:
        """The output size changed."""
        if self.vcam is not None:
            self.stop_vcam()
            self.start_vcam()

    # -- command thread: recording ---------------------------------------------------------------------
    def start_recording(self, path: str) -> None:
        from reenact_app.sinks import Recorder, RecorderConfig

        if self.recorder is not None:
            return
        pipeline = self._pipeline()
        if pipeline is None:
            self._ui.message("warning", "Recording needs a running preview (load a model first).")
            return
        s = self._settings()
        size = None if s.record_side_by_side else parse_resolution(s.output_resolution)
        sink = GatedSink(Recorder(RecorderConfig(path=path, fps=self._source_fps(25.0), size=size,
                                                 side_by_side=s.record_side_by_side, realtime=True)))
        try:
            pipeline.add_sink(sink)
        except ReenactError as exc:
            self._ui.update_state(recording=False)
            self._ui.message("error", f"Can't record: {exc}", "Choose another folder (settings: record_dir) with free space.")
            return
        self.recorder, self._recorder_path = sink, path
        self._ui.update_state(recording=True, recording_path=path)

    def stop_recording(self) -> None:
        sink, self.recorder = self.recorder, None
        if sink is None:
            return
        sink.detach()  # waits for the encoder: the file is complete when this returns
        pipeline = self._pipeline()
        if pipeline is not None:
            pipeline.remove_sink(sink)
        path = self._recorder_path
        self._ui.update_state(recording=False, recording_path="", last_recording=path)
        if sink.error:
            self._ui.message("error", f"Recording {Path(path).name} failed: {sink.error}")
        else:
            self._ui.message("info", f"Recording saved: {path} ({sink.frames} frames)")

    def drop_failed(self, sink: GatedSink) -> None:
        """Lets go of a sink the pipeline dropped after an error; a recording is finished as far as it got."""
        if sink is self.vcam:
            self.vcam = None
        if sink is self.recorder:
            self.recorder = None
            sink.detach()

    # -- UI thread -------------------------------------------------------------------------------------
    def check_failures(self, submit: Callable[..., None]) -> dict:
        """The AppState changes for sinks that failed since the last check (their buttons go off); the
        command thread is asked to let go of them."""
        changes: dict = {}
        for sink, name in ((self.vcam, "vcam"), (self.recorder, "recorder")):
            if sink is None or not sink.error or any(sink is seen for seen in self._failures_seen):
                continue
            self._failures_seen = [*self._failures_seen[-7:], sink]
            if name == "vcam":
                changes.update(vcam_on=False, vcam="stopped (error)")
                submit("Closing virtual camera", self.drop_failed, sink)
            else:
                changes.update(recording=False, recording_path="")
                submit("Finishing recording", self.drop_failed, sink)
        return changes

    @property
    def virtual_camera(self):
        """The VirtualCamera sink in use, or None."""
        sink = self.vcam
        return sink.inner if sink is not None else None

    def default_recording_path(self) -> Path:
        record_dir = self._settings().record_dir
        folder = Path(record_dir) if record_dir else _videos_dir()
        return folder / time.strftime("reenact-%Y%m%d-%H%M%S.mp4")


def _videos_dir() -> Path:
    for candidate in (Path.home() / "Videos", Path.home()):
        if candidate.is_dir():
            return candidate
    return Path.cwd()
