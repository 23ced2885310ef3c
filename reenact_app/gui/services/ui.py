"""The one channel from worker threads to the UI thread, and what a service may change through it.

Why: AppState, AppSettings, the camera list, the avatar list and the thumbnails are written by the UI
thread only. A service working on the command or pipeline thread computes its result there and posts the
change; `UiThread.post` runs it on the UI thread, in the order posted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtCore import QObject, Qt, Signal


def on_ui_thread() -> bool:
    """True on Qt's main thread, the UI thread."""
    return threading.current_thread() is threading.main_thread()


def set_fields(target: Any, changes: dict[str, Any]) -> None:
    """Sets dataclass fields by name; a misspelt name fails loudly instead of adding an attribute."""
    for name, value in changes.items():
        if not hasattr(target, name):
            raise AttributeError(f"{type(target).__name__} has no field {name!r}")
        setattr(target, name, value)


class UiThread(QObject):
    """Runs callables on the UI thread: at once when called there, else queued behind the events already posted."""

    _posted = Signal(object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._lock = threading.Lock()
        self._pending = 0
        self._posted.connect(self._run, Qt.ConnectionType.QueuedConnection)

    def post(self, fn: Callable[[], None]) -> None:
        if on_ui_thread():
            fn()
            return
        with self._lock:
            self._pending += 1
        self._posted.emit(fn)

    @property
    def pending(self) -> int:
        """Posted callables not run yet (a command's results are applied when this is 0 after it)."""
        with self._lock:
            return self._pending

    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        finally:
            with self._lock:
                self._pending -= 1


@dataclass(frozen=True)
class UiPort:
    """What a service may do to the UI; every call is safe from any thread (the change happens on the UI thread)."""

    post: Callable[[Callable[[], None]], None]  # run a callable on the UI thread
    update_state: Callable[..., None]  # AppState fields, then stateChanged
    update_settings: Callable[..., None]  # AppSettings fields, then settingsChanged and a save soon
    message: Callable[..., None]  # a banner: level, text, fix="", action label="", action key=""
    busy: Callable[[str], None]  # the busy text in the status bar

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Posts `fn(*args)` to the UI thread."""
        self.post(lambda: fn(*args))
