"""Where the bundled assets are: the repo's `assets/` in a checkout, `<prefix>/share/reenact/assets` in a wheel."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_REPO_ASSETS = Path(__file__).resolve().parent.parent / "assets"


def assets_dir() -> Path:
    """The bundled assets folder; REENACT_ASSETS overrides it (tests, packagers)."""
    override = os.environ.get("REENACT_ASSETS")
    if override:
        return Path(override)
    if _REPO_ASSETS.is_dir():
        return _REPO_ASSETS
    for prefix in (sys.prefix, sys.base_prefix):
        candidate = Path(prefix) / "share" / "reenact" / "assets"
        if candidate.is_dir():
            return candidate
    return _REPO_ASSETS


def default_weights() -> Path:
    """The default checkpoint shipped in assets/weights (the real-time model)."""
    return assets_dir() / "weights" / "default.safetensors"
