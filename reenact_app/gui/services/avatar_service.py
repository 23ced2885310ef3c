"""The avatar gallery (list and thumbnails) and the avatar in use."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable

from reenact_app.gui import avatars as avatar_files
from reenact_app.gui.services.ui import UiPort
from reenact_common.errors import MediaError

log = logging.getLogger(__name__)

DEFAULT_AVATAR_SIZE = 256  # crop size before an engine says its own


class AvatarService:
    """The avatar gallery (list and thumbnails) and the avatar in use.

    Threads:
    - UI thread: `avatars` (the gallery's list of paths) and `thumbnails` are written there only, each
      replaced whole and never changed in place, so another thread may read the one it sees. `want` (a key
      or click asked for an avatar) runs there.
    - command thread: face detection (`load`), importing files, decoding thumbnails; it owns `current` (the
      prepared AvatarCrop the pipeline runs) and the picture without a face awaiting the user's answer. Its
      new lists and thumbnails are posted to the UI thread. Avatars are named by path across threads, so a
      list that changes meanwhile never makes an index point at another picture.
    """

    def __init__(self, ui: UiPort, extra: list[str], *, model_size: Callable[[], int | None],
                 pipeline: Callable[[], object], on_list_changed: Callable[[], None]):
        self._ui = ui
        self.extra = [str(Path(p).resolve()) for p in extra]  # given on the command line: listed, never saved
        self.avatars: list[str] = avatar_files.list_avatars(self.extra)
        self.thumbnails: dict = {}  # path -> QImage, for avatars added while running
        self._model_size = model_size
        self._pipeline = pipeline
        self._on_list_changed = on_list_changed  # UI thread, after a new list was applied
        self.current = None  # tracking.AvatarCrop in use
        self.pending: tuple[str, object] | None = None  # (path, AvatarCrop) without a face, awaiting the user
        self._lock = threading.Lock()  # `_wanted` / `_queued`: the UI asks, the command thread takes
        self._wanted = ""
        self._queued = False
        self.loads = 0  # avatar switches performed (tests check the coalescing)

    # -- UI thread -------------------------------------------------------------------------------------
    def index_of(self, path: str) -> int:
        return self.avatars.index(path) if path in self.avatars else -1

    def initial(self, saved: str) -> str | None:
        """The avatar to start with: the last given on the command line, else the saved one, else the first."""
        if not self.avatars:
            return None
        if self.extra:
            return self.extra[-1]
        return saved if saved in self.avatars else self.avatars[0]

    def want(self, index: int) -> bool:
        """Latest wins: True when a load must be queued (holding or hammering the number keys queues at
        most one)."""
        if not 0 <= index < len(self.avatars):
            return False
        with self._lock:
            self._wanted = self.avatars[index]
            if self._queued:
                return False
            self._queued = True
            return True

    # -- command thread ----------------------------------------------------------------------------------
    def load_initial(self, path: str | None) -> None:
        if path is None:
            self._ui.message("warning", "No avatars found.", "Add one with File ▸ Add avatar… or drop an image on the window.")
        else:
            self.load(path)

    def load_wanted(self) -> None:
        with self._lock:
            path, self._queued = self._wanted, False
        self.loads += 1
        self.load(path)

    def load(self, path: str, accept_no_face: bool = False, prepared=None) -> None:
        """Finds the face in the picture and hands the crop to the pipeline. No face: the avatar stays
        and the banner offers the centre crop."""
        from reenact_app.tracking import prepare_avatar

        if prepared is None:
            image = avatar_files.load_avatar_image(path)
            prepared = prepare_avatar(image, self._model_size() or DEFAULT_AVATAR_SIZE)
        name = Path(path).name
        if not prepared.face_found and not accept_no_face:
            self.pending = (path, prepared)
            self._ui.message("warning", f"No face found in {name}: the avatar was not changed.",
                             "Choose a picture with a clear, frontal face, or use its centre crop anyway.",
                             "Use centre crop", "accept_center_crop")
            return
        self.pending = None
        self.current = prepared
        self._ui.post(lambda: self._ui.update_state(avatar_index=self.index_of(path), avatar_path=path))
        if path not in self.extra:
            self._ui.update_settings(avatar=path)
        pipeline = self._pipeline()
        if pipeline is not None:
            pipeline.set_avatar(prepared)
        if prepared.message and prepared.face_found:
            self._ui.message("info", f"{name}: {prepared.message}")
        log.info("avatar: %s", path)

    def add(self, paths: list[str]) -> None:
        """Imports pictures into the user's avatar folder, posts the new list and thumbnails, and
        switches to the last one added."""
        from reenact_app.gui.widgets.gallery import load_thumbnail

        added = []
        for path in paths:
            try:
                added.append(str(avatar_files.import_avatar(path)))
            except (MediaError, OSError) as exc:
                self._ui.message("error", f"Can't add {Path(path).name}: {exc}", "Use a JPEG, PNG, BMP or WebP picture of a face.")
        if not added:
            return
        thumbnails = {path: load_thumbnail(path) for path in added}  # decoded here, not on the UI thread
        avatars = avatar_files.list_avatars(self.extra)
        self._ui.post(lambda: self._show_list(avatars, thumbnails))
        self.load(added[-1])

    def _show_list(self, avatars: list[str], thumbnails: dict) -> None:
        self.avatars = avatars
        self.thumbnails = {**self.thumbnails, **thumbnails}
        self._on_list_changed()
