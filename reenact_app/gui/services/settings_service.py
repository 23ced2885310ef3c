"""The AppSettings in use and their file."""

from __future__ import annotations

import logging
from typing import Any, Callable

from PySide6.QtCore import QTimer

from reenact_app.gui.services.ui import on_ui_thread, set_fields
from reenact_app.gui.settings import AppSettings, save_settings

log = logging.getLogger(__name__)

SAVE_DELAY_MS = 500  # a slider drag saves once, after it stops


class SettingsService:
    """The AppSettings in use and their file.

    Threads: the UI thread owns `settings`: it is their only writer (user actions call `set`; the command
    thread's results arrive through `update`, which posts to the UI thread) and runs the save timer. Other
    threads only read fields.
    """

    def __init__(self, settings: AppSettings, *, persist: bool, post: Callable[[Callable[[], None]], None],
                 on_changed: Callable[[], None]):
        self.settings = settings
        self.persist = persist  # False: screenshot runs and tests leave no file behind
        self._post = post
        self._on_changed = on_changed  # UI thread, after every change that did not come from a widget
        self._save_timer = QTimer()
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(SAVE_DELAY_MS)
        self._save_timer.timeout.connect(self.save)

    def update(self, **changes: Any) -> None:
        """Sets fields from any thread (applied on the UI thread, in order), then says so and saves soon."""

        def apply() -> None:
            set_fields(self.settings, changes)
            self._on_changed()
            self.schedule_save()

        self._post(apply)

    def set(self, name: str, value: Any) -> bool:
        """UI thread: one field from a widget, checked; True when it changed."""
        s = self.settings
        if not hasattr(s, name):
            raise AttributeError(f"AppSettings has no field {name!r}")
        if getattr(s, name) == value:
            return False
        setattr(s, name, value)
        s.validated()
        self.schedule_save()
        return True

    def reset(self) -> AppSettings:
        """UI thread: back to defaults, the window geometry kept; returns the previous settings."""
        old = self.settings
        self.settings = AppSettings(window_geometry=old.window_geometry)
        self.save()
        return old

    def schedule_save(self) -> None:
        if on_ui_thread():
            self._save_timer.start()

    def save(self) -> None:
        if not self.persist:
            return
        try:
            save_settings(self.settings)
        except OSError as exc:
            log.warning("settings not saved: %s", exc)

    def close(self) -> None:
        """UI thread, at shutdown: the pending save now."""
        self._save_timer.stop()
        self.save()
