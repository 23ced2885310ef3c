"""Avatar files: where they are and how user avatars are imported.

Reading goes through `reenact_app.images.load_avatar_image`, the one defensive loader for files from
strangers (header checked before decoding, huge images decoded reduced, odd formats converted).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from reenact_common.paths import assets_dir
from reenact_common.video_io import IMAGE_SUFFIXES
from reenact_app.gui.settings import user_avatar_dir
from reenact_app.images import load_avatar_image

log = logging.getLogger(__name__)



def bundled_avatar_dir() -> Path:
    return assets_dir() / "avatars"


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: p.name.lower())


def list_avatars(extra: list[str] | None = None) -> list[str]:
    """Bundled avatars first (stable order), then the user's, then `extra` paths given on the command line."""
    paths = [str(p) for p in _images_in(bundled_avatar_dir()) + _images_in(user_avatar_dir())]
    for p in extra or []:
        if str(p) not in paths:
            paths.append(str(p))
    return paths


def import_avatar(path: str | Path) -> Path:
    """Copies a (readable) image into the user avatar folder so it survives the original moving."""
    src = Path(path)
    load_avatar_image(src)  # refuse before copying anything
    folder = user_avatar_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if src.resolve().parent == folder.resolve():
        return src
    suffix = src.suffix.lower() if src.suffix.lower() in IMAGE_SUFFIXES else ".png"
    target = folder / f"{src.stem}{suffix}"
    n = 2
    while target.exists():
        target = folder / f"{src.stem}-{n}{suffix}"
        n += 1
    shutil.copyfile(src, target)
    log.info("avatar imported: %s -> %s", src, target)
    return target
