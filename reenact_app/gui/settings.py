"""User settings: one typed dataclass saved as JSON in the user config dir.

JSON rather than QSettings so the file is readable, diffable and loadable without Qt (tests, CLI).
Loading is forgiving on purpose: a hand-edited or stale file with unknown keys or wrong types falls back
to the default for that field instead of stopping the app from starting.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

log = logging.getLogger(__name__)

APP_NAME = "reenact"
SETTINGS_FILE = "settings.json"

EXPRESSION_MAX = 2.0  # the slider's and keys' top (the session accepts up to 3)
EXPRESSION_STEP = 0.25  # one press of [ or ]
ENGINE_CHOICES = ("auto", "tensorrt", "onnxruntime", "torch")
RESOLUTIONS = ("640x480", "1280x720", "1920x1080")
OUTPUT_RESOLUTIONS = ("640x480", "1280x720")


@dataclass
class AppSettings:
    """Everything the user can change and expects to find again at the next launch."""

    avatar: str = ""  # path of the selected avatar ("" = first bundled one)
    source: str = "auto"  # "auto" (camera if present else demo clip), "camera" or "video"
    camera_index: int = 0
    camera_resolution: str = "640x480"
    video_path: str = ""  # driving video file ("" = bundled demo clip)
    relative: bool = True
    adapt_scale: bool = True
    smoothing: float = 0.5  # 0 = off, 1 = strongest keypoint/crop smoothing
    expression: float = 1.0  # how strongly mouth and eye openness carry over (0 = off, 1 = as the driver, 2 max)
    crop_margin: float = 0.45  # extra room around the face box, fraction of its size
    freeze_crop: bool = False
    mirror: bool = True
    paste_back: bool = True
    full_resolution: bool = True  # paste back at the avatar picture's own resolution (sharper face)
    show_keypoints: bool = False
    output_resolution: str = "640x480"
    engine: str = "auto"
    model_path: str = ""  # "" = bundled weights; else a checkpoint (ours or upstream FOMM)
    model_config: str = ""  # upstream FOMM YAML config for an upstream checkpoint
    avatar_detail: bool = True  # the checkpoint's warped-source blend; off: the decoder's softer output alone
    record_dir: str = ""  # "" = ~/Videos or home
    record_side_by_side: bool = False
    window_geometry: str = ""  # base64 QWidget.saveGeometry()
    extra: dict = field(default_factory=dict)  # forward compatibility: free-form values

    @classmethod
    def from_dict(cls, data: dict) -> "AppSettings":
        """Builds settings from parsed JSON, keeping the default for any missing or mistyped value."""
        settings = cls()
        if not isinstance(data, dict):
            return settings
        for f in fields(cls):
            if f.name not in data:
                continue
            value = data[f.name]
            default = getattr(settings, f.name)
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, float):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                value = float(value) if ok else value
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, type(default))
            if ok:
                setattr(settings, f.name, value)
            else:
                log.warning("settings: ignoring %s=%r (expected %s)", f.name, value, type(default).__name__)
        return settings.validated()

    def validated(self) -> "AppSettings":
        """Clamps ranges and replaces unknown choices, so the widgets never see an impossible value."""
        self.smoothing = min(max(self.smoothing, 0.0), 1.0)
        self.expression = round(min(max(self.expression, 0.0), EXPRESSION_MAX), 2)
        self.crop_margin = min(max(self.crop_margin, 0.0), 2.0)
        self.camera_index = max(self.camera_index, 0)
        if self.engine not in ENGINE_CHOICES:
            self.engine = "auto"
        if self.source not in ("auto", "camera", "video"):
            self.source = "auto"
        if self.output_resolution not in OUTPUT_RESOLUTIONS:
            self.output_resolution = OUTPUT_RESOLUTIONS[0]
        if parse_resolution(self.camera_resolution) is None:
            self.camera_resolution = RESOLUTIONS[0]
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def parse_resolution(text: str) -> tuple[int, int] | None:
    """'640x480' -> (640, 480); None when malformed."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except (ValueError, AttributeError):
        return None
    return (w, h) if w > 0 and h > 0 else None


def config_dir() -> Path:
    """REENACT_CONFIG_DIR (tests), else the platform's per-user config folder."""
    override = os.environ.get("REENACT_CONFIG_DIR")
    if override:
        return Path(override)
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / APP_NAME


def user_avatar_dir() -> Path:
    """Where avatars the user adds are copied, so they survive the original file moving."""
    return config_dir() / "avatars"


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


def load_settings(path: Path | None = None) -> AppSettings:
    """Reads the settings file; a missing or unreadable file gives the defaults (and a log line)."""
    path = path or settings_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return AppSettings()
    except (OSError, ValueError) as exc:
        log.warning("settings: %s is unreadable (%s); using defaults", path, exc)
        return AppSettings()
    return AppSettings.from_dict(data)


def save_settings(settings: AppSettings, path: Path | None = None) -> Path:
    """Atomic write (temp file + rename) so a crash mid-save never leaves a truncated file."""
    path = path or settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(settings.to_dict(), fh, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def reset_settings(path: Path | None = None) -> AppSettings:
    """Back to defaults, written to disk so the next launch starts clean too."""
    settings = AppSettings()
    save_settings(settings, path)
    return settings
