"""The driving sources: the camera list, opening a camera or a video file."""

from __future__ import annotations

import logging
from pathlib import Path

from reenact_app.gui.services.ui import UiPort
from reenact_app.gui.settings import AppSettings, parse_resolution
from reenact_common.errors import MediaError
from reenact_common.paths import assets_dir

log = logging.getLogger(__name__)

DEFAULT_CAMERA_SIZE = (640, 480)
CAMERA_FPS = 30


def demo_clip() -> Path:
    return assets_dir() / "driving" / "demo.mp4"


class SourceService:
    """The driving sources: the camera list, opening a camera or a video file.

    Threads:
    - UI thread: `cameras` (what the source menu lists) is written there only, replaced whole; so is
      `driving_override` (the --driving given at start, dropped once the user picks a source).
    - command thread: enumerating cameras (the list is posted to the UI thread) and opening sources, which
      may take a second (a camera) and must not run between two frames of the pipeline. It keeps its own
      copy of the last enumeration, so the first source never waits for the UI thread to apply the list;
      a switch asked for on the UI thread brings the list the user saw.
    - `camera_factory` and the fixed camera list: set on the UI thread (tests inject fakes), read by the
      command thread.
    """

    def __init__(self, ui: UiPort, *, driving: str | None, camera_factory=None, cameras: list | None = None):
        self._ui = ui
        self.driving_override = driving
        self.camera_factory = camera_factory  # None = cv2.VideoCapture; tests pass FakeVideoCapture.factory
        self._fixed_cameras = cameras  # tests: skip enumeration and use these CameraInfo
        self.cameras: list = []
        self._found: list = []  # the command thread's copy of the last enumeration

    # -- UI thread ------------------------------------------------------------------------------------
    def cameras_for_ui(self) -> list[tuple[int, str]]:
        return [(c.index, c.name) for c in self.cameras]

    def video_label(self, settings: AppSettings) -> str:
        if self.driving_override and not self.driving_override.isdigit():
            return f"Video: {Path(self.driving_override).name}"
        return f"Video: {Path(settings.video_path).name}" if settings.video_path else "Video: demo clip"

    def _show_cameras(self, cameras: list) -> None:
        self.cameras = cameras
        self._ui.update_state()  # the source menu lists them

    # -- command thread --------------------------------------------------------------------------------
    def find_cameras(self) -> None:
        from reenact_app.capture import list_cameras

        try:
            found = list(self._fixed_cameras) if self._fixed_cameras is not None else list_cameras()
        except Exception as exc:  # noqa: BLE001 - enumeration must never stop the app
            log.warning("camera enumeration failed: %s", exc)
            found = []
        log.info("cameras: %s", [(c.index, c.name) for c in found] or "none")
        self._found = found
        self._ui.call(self._show_cameras, list(found))

    def open(self, settings: AppSettings, cameras: list | None = None):
        """The configured driving source (`cameras`: the list to pick from, None: the last enumeration);
        falls back to the demo clip, and says so, when it can't open."""
        from reenact_app.capture import CameraSource, VideoFileSource, open_source

        cameras = self._found if cameras is None else cameras
        s = settings
        override = self.driving_override
        if override:
            self._show_source("camera" if override.isdigit() else "video", Path(override).name)
            return open_source(override, loop=True, realtime=True)
        use_camera = s.source == "camera" or (s.source == "auto" and cameras)
        if use_camera and cameras:
            index = s.camera_index if any(c.index == s.camera_index for c in cameras) else cameras[0].index
            self._show_source("camera", next((c.name for c in cameras if c.index == index), f"Camera {index}"))
            w, h = parse_resolution(s.camera_resolution) or DEFAULT_CAMERA_SIZE
            return CameraSource(index, w, h, CAMERA_FPS, capture_factory=self.camera_factory)
        if s.source in ("auto", "camera") and not cameras:
            self._ui.message("info", "No camera found: playing the bundled demo clip instead.",
                             "Connect a webcam and pick it under Driving source, or open a video file.")
        if s.source == "video" and s.video_path:
            try:
                source = VideoFileSource(s.video_path, loop=True, realtime=True)
                self._show_source("video", Path(s.video_path).name)
                return source
            except MediaError as exc:
                self._ui.message("warning", f"{exc}: playing the bundled demo clip instead.", "", "Open video…", "choose_video")
        self._show_source("video", "demo clip" + (" (no camera)" if not cameras else ""))
        return VideoFileSource(demo_clip(), loop=True, realtime=True)

    def _show_source(self, kind: str, name: str) -> None:
        self._ui.update_state(source_kind=kind, source_name=name, source_label=name)
