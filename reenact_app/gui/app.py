"""QApplication setup and the checks that must run before Qt touches the display.

Two traps handled here:
- `import cv2` (opencv-contrib-python) points QT_QPA_PLATFORM_PLUGIN_PATH and QT_QPA_FONTDIR at
  OpenCV's own bundled Qt 5 plugins; PySide6 (Qt 6) would then load the wrong xcb plugin and abort.
- With no display, Qt aborts with a plugin traceback; we detect that first and print one useful line.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)

HEADLESS_PLATFORMS = ("offscreen", "minimal", "vnc", "eglfs", "linuxfb")
NO_DISPLAY_MESSAGE = (
    "reenact-app: no display found (DISPLAY/WAYLAND_DISPLAY unset or unreachable); "
    "headless alternatives: `reenact-app --driving VIDEO --avatar IMAGE --frames N --screenshot OUT.png` "
    "(offscreen), `reenact live` (live pipeline) or `reenact animate` (offline)"
)


def remove_cv2_qt_overrides(env: dict | None = None) -> list[str]:
    """Drops Qt variables that point inside the cv2 package (set by `import cv2`); returns their names."""
    env = os.environ if env is None else env
    removed = []
    for key in ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR", "QT_PLUGIN_PATH"):
        value = env.get(key, "")
        if value and f"{os.sep}cv2{os.sep}" in value + os.sep:
            del env[key]
            removed.append(key)
    if removed:
        log.debug("removed OpenCV's Qt overrides: %s", ", ".join(removed))
    return removed


def _x11_display_reachable(display: str) -> bool:
    """Cheap check for a local X server socket; remote displays (host:N) are assumed reachable."""
    host, _, rest = display.partition(":")
    if host and host not in ("unix", "localhost"):
        return True
    number = rest.split(".")[0]
    if not number.isdigit():
        return False
    return Path(f"/tmp/.X11-unix/X{number}").exists() or host == "localhost"


def has_display(env: dict | None = None, platform: str | None = None) -> bool:
    """True when a GUI window can open: a headless Qt platform was requested, or a display exists."""
    env = os.environ if env is None else env
    platform = platform or sys.platform
    qpa = env.get("QT_QPA_PLATFORM", "").split(":")[0].strip().lower()
    if qpa in HEADLESS_PLATFORMS:
        return True
    if not platform.startswith("linux"):
        return True  # Windows and macOS always have a window system for a desktop user
    if env.get("WAYLAND_DISPLAY"):
        return True
    display = env.get("DISPLAY", "")
    return bool(display) and _x11_display_reachable(display)


def create_application(argv: list[str] | None = None, offscreen: bool = False):
    """Creates (or returns) the QApplication; `offscreen` forces the offscreen platform (screenshot mode)."""
    remove_cv2_qt_overrides()
    if offscreen:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QCoreApplication
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        QCoreApplication.setOrganizationName("Reenact")
        QCoreApplication.setApplicationName("Reenact")
        app = QApplication(list(argv or sys.argv[:1]))
        app.setApplicationDisplayName("Reenact")
    return app
