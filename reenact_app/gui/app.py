"""QApplication setup and the checks that must run before Qt touches the display.

Three traps handled here:
- `import cv2` (opencv-contrib-python) points QT_QPA_PLATFORM_PLUGIN_PATH and QT_QPA_FONTDIR at
  OpenCV's own bundled Qt 5 plugins; PySide6 (Qt 6) would then load the wrong xcb plugin and abort.
- With no display, Qt aborts with a plugin traceback; we detect that first and print one useful line.
- On an X11 desktop whose system lacks a library Qt's xcb plugin links (fresh Debian/Ubuntu machines
  often lack libxcb-icccm4, libxcb-keysyms1 or libxcb-cursor0), Qt aborts the process with a generic
  "could not load the Qt platform plugin" that names no missing file; `ldd` names them, and we say
  which packages to install.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import subprocess
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


def uses_xcb(env: dict | None = None, platform: str | None = None) -> bool:
    """True when Qt will load its X11 (xcb) platform plugin: Linux, xcb requested or nothing requested
    and no Wayland session."""
    env = os.environ if env is None else env
    if not (platform or sys.platform).startswith("linux"):
        return False
    qpa = env.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip().lower()
    if qpa:
        return qpa == "xcb"
    return not env.get("WAYLAND_DISPLAY")


def xcb_plugin() -> Path | None:
    """PySide6's xcb platform plugin, found without importing Qt."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or spec.origin is None:
        return None
    plugin = Path(spec.origin).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.is_file() else None


def parse_ldd_missing(ldd_output: str) -> list[str]:
    """The libraries `ldd` reports as `name => not found`, each once, sorted."""
    return sorted(set(re.findall(r"^\s*(\S+)\s+=>\s+not found", ldd_output, flags=re.MULTILINE)))


def missing_system_libraries(plugin: Path | None = None) -> list[str]:
    """Shared libraries the xcb plugin needs that the system lacks; [] when none or when it cannot tell
    (no plugin file, no `ldd`): then Qt is left to try."""
    plugin = plugin or xcb_plugin()
    if plugin is None or not Path(plugin).is_file():
        return []
    try:
        result = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        log.debug("could not run ldd on %s: %s", plugin, error)
        return []
    return parse_ldd_missing(result.stdout)


def debian_package(soname: str) -> str:
    """The Debian/Ubuntu package of a shared library, by Debian's library naming policy:
    libxcb-icccm.so.4 -> libxcb-icccm4, libxkbcommon-x11.so.0 -> libxkbcommon-x11-0."""
    stem, _, version = soname.partition(".so")
    stem, version = stem.lower(), version.lstrip(".").split(".")[0]
    if not version:
        return stem
    return f"{stem}-{version}" if stem[-1:].isdigit() else f"{stem}{version}"


def missing_libraries_message(missing: list[str]) -> str:
    packages = " ".join(debian_package(name) for name in missing)
    return (
        f"reenact-app: Qt cannot open an X11 window: the system lacks {', '.join(missing)} (needed by Qt's "
        f"xcb platform plugin). Debian/Ubuntu: `sudo apt install {packages}`; other distributions: the "
        "packages that provide these files. Meanwhile the headless modes work: "
        "`reenact-app --screenshot OUT.png --offscreen`, `reenact live`, `reenact animate`"
    )


def xcb_problem(env: dict | None = None) -> str | None:
    """What stops Qt's X11 plugin from loading here, as a message for the user; None when nothing does
    (or Qt will not use X11)."""
    if not uses_xcb(env):
        return None
    missing = missing_system_libraries()
    return missing_libraries_message(missing) if missing else None


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
