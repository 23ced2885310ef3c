"""The call outputs of the controller: virtual camera and recording (a mixin of AppController).

Both are pipeline sinks wrapped in a GatedSink, started and stopped on the command thread: opening a
device or finishing an mp4 never runs on the UI thread, and a stop returns only when the device is
released / the file is complete.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from reenact_common.errors import ReenactError
from reenact_app.gui.live import GatedSink
from reenact_app.gui.settings import parse_resolution

log = logging.getLogger(__name__)


class OutputsMixin:
    """Needs from the host: bridge, settings, state, _pipeline, _source, _vcam, _recorder, vcam_backend,
    raise_message(), _changed(), _update_state()."""

    # -- virtual camera ---------------------------------------------------------------------------
    def start_virtual_camera(self) -> None:
        self.bridge.submit("Starting virtual camera", self._start_vcam)

    def stop_virtual_camera(self) -> None:
        self.bridge.submit("Stopping virtual camera", self._stop_vcam)

    def _start_vcam(self) -> None:
        from reenact_app.sinks import VirtualCamera, VirtualCameraConfig
        from reenact_common.errors import VirtualCameraError

        if self._vcam is not None:
            return
        if self._pipeline is None:
            self._update_state(vcam_on=False)
            self.raise_message("warning", "The virtual camera needs a running preview (load a model first).")
            return
        w, h = parse_resolution(self.settings.output_resolution) or (640, 480)
        fps = self._source.fps if self._source is not None and self._source.fps else 30.0
        sink = GatedSink(VirtualCamera(VirtualCameraConfig(w, h, fps, backend=self.vcam_backend, steady=True)))
        try:
            self._pipeline.add_sink(sink)
        except VirtualCameraError as exc:
            text = str(exc)
            first, _, rest = text.partition("\n")
            self._update_state(vcam_on=False, vcam="unavailable")
            self.raise_message("error", first, rest.strip())
            return
        self._vcam = sink
        device = sink.inner.device or ""
        self._update_state(vcam_on=True, vcam_device=device, vcam=f"on {device} {w}x{h}".strip())

    def _stop_vcam(self) -> None:
        sink, self._vcam = self._vcam, None
        if sink is not None:
            sink.detach()
            if self._pipeline is not None:
                self._pipeline.remove_sink(sink)
        self._update_state(vcam_on=False, vcam="off")

    def _restart_vcam(self) -> None:
        self._stop_vcam()
        self._start_vcam()

    @property
    def virtual_camera(self):
        """The VirtualCamera sink in use, or None."""
        return self._vcam.inner if self._vcam is not None else None

    # -- recording ------------------------------------------------------------------------------
    def default_recording_path(self) -> Path:
        folder = Path(self.settings.record_dir) if self.settings.record_dir else _videos_dir()
        return folder / time.strftime("reenact-%Y%m%d-%H%M%S.mp4")

    def start_recording(self, path: str | Path | None = None) -> None:
        self.bridge.submit("Starting recording", self._start_recording, str(path or self.default_recording_path()))

    def stop_recording(self) -> None:
        self.bridge.submit("Finishing recording", self._stop_recording)

    def _start_recording(self, path: str) -> None:
        from reenact_app.sinks import Recorder, RecorderConfig

        if self._recorder is not None:
            return
        if self._pipeline is None:
            self.raise_message("warning", "Recording needs a running preview (load a model first).")
            return
        s = self.settings
        size = None if s.record_side_by_side else parse_resolution(s.output_resolution)
        fps = self._source.fps if self._source is not None and self._source.fps else 25.0
        sink = GatedSink(Recorder(RecorderConfig(path=path, fps=fps, size=size, side_by_side=s.record_side_by_side,
                                                 realtime=True)))
        try:
            self._pipeline.add_sink(sink)
        except ReenactError as exc:
            self._update_state(recording=False)
            self.raise_message("error", f"Can't record: {exc}", "Choose another folder (settings: record_dir) with free space.")
            return
        self._recorder, self._recorder_path = sink, path
        self._update_state(recording=True, recording_path=path)

    def _stop_recording(self) -> None:
        sink, self._recorder = self._recorder, None
        if sink is None:
            return
        sink.detach()  # waits for the encoder: the file is complete when this returns
        if self._pipeline is not None:
            self._pipeline.remove_sink(sink)
        path = self._recorder_path
        self._update_state(recording=False, recording_path="", last_recording=path)
        if sink.error:
            self.raise_message("error", f"Recording {Path(path).name} failed: {sink.error}")
        else:
            self.raise_message("info", f"Recording saved: {path} ({sink.frames} frames)")


def _videos_dir() -> Path:
    for candidate in (Path.home() / "Videos", Path.home()):
        if candidate.is_dir():
            return candidate
    return Path.cwd()
