"""Avatar files: where they are, how they are read safely, how user avatars are imported.

Reading is defensive because avatars come from strangers: the header is checked before decoding (a
20000x20000 image is decoded at reduced resolution instead of allocating gigabytes), 16-bit,
greyscale and RGBA images are converted, and anything OpenCV can't decode becomes a MediaError with
a message the banner can show.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np

from models.paths import assets_dir
from reenact_app.errors import MediaError
from reenact_app.gui.settings import user_avatar_dir

log = logging.getLogger(__name__)

AVATAR_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_DECODE_PIXELS = 40_000_000  # above this, decode at 1/2, 1/4 or 1/8 resolution
MAX_PIXELS = 40_000_000 * 64  # beyond even a 1/8 decode: refuse
MAX_SIDE = 2048  # avatars are kept at most this large (paste-back output size)


def bundled_avatar_dir() -> Path:
    return assets_dir() / "avatars"


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AVATAR_SUFFIXES), key=lambda p: p.name.lower())


def list_avatars(extra: list[str] | None = None) -> list[str]:
    """Bundled avatars first (stable order), then the user's, then `extra` paths given on the command line."""
    paths = [str(p) for p in _images_in(bundled_avatar_dir()) + _images_in(user_avatar_dir())]
    for p in extra or []:
        if str(p) not in paths:
            paths.append(str(p))
    return paths


def _header_size(data: np.ndarray) -> tuple[int, int] | None:
    """(width, height) from the image header without decoding pixels (Qt's reader is header-only)."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtGui import QImageReader

    buffer = QBuffer()
    buffer.setData(QByteArray(data.tobytes()))
    buffer.open(QIODevice.OpenModeFlag.ReadOnly)
    size = QImageReader(buffer).size()
    return (size.width(), size.height()) if size.isValid() else None


def load_avatar_image(path: str | Path) -> np.ndarray:
    """An avatar file as uint8 RGB, at most MAX_SIDE on its long side. Raises MediaError with the reason."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise MediaError(f"can't read avatar {path.name}: {exc.strerror or exc}") from exc
    if size == 0:
        raise MediaError(f"avatar {path.name} is an empty file")
    if size > MAX_FILE_BYTES:
        raise MediaError(f"avatar {path.name} is too large ({size / 1e6:.0f} MB); use an image under 200 MB")
    data = np.fromfile(str(path), dtype=np.uint8)  # fromfile + imdecode: any path encoding works
    flags = cv2.IMREAD_COLOR
    dims = _header_size(data)
    if dims is not None:
        pixels = dims[0] * dims[1]
        if pixels > MAX_PIXELS:
            raise MediaError(f"avatar {path.name} is {dims[0]}x{dims[1]} pixels: too large to load")
        if pixels > MAX_DECODE_PIXELS:
            for factor, flag in ((2, cv2.IMREAD_REDUCED_COLOR_2), (4, cv2.IMREAD_REDUCED_COLOR_4), (8, cv2.IMREAD_REDUCED_COLOR_8)):
                flags = flag
                if pixels / factor**2 <= MAX_DECODE_PIXELS:
                    break
    try:
        image = cv2.imdecode(data, flags)
    except cv2.error as exc:
        raise MediaError(f"can't decode avatar {path.name}: {exc}") from exc
    if image is None or image.size == 0:
        raise MediaError(f"{path.name} is not an image Reenact can read (use a JPEG, PNG, BMP or WebP file)")
    if image.dtype != np.uint8:
        image = (image / 257).astype(np.uint8) if image.dtype == np.uint16 else cv2.convertScaleAbs(image)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    h, w = image.shape[:2]
    if min(h, w) < 32:
        raise MediaError(f"avatar {path.name} is only {w}x{h} pixels; use a picture at least 256 pixels wide")
    if max(h, w) > MAX_SIDE:
        f = MAX_SIDE / max(h, w)
        image = cv2.resize(image, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))


def import_avatar(path: str | Path) -> Path:
    """Copies a (readable) image into the user avatar folder so it survives the original moving."""
    src = Path(path)
    load_avatar_image(src)  # refuse before copying anything
    folder = user_avatar_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if src.resolve().parent == folder.resolve():
        return src
    suffix = src.suffix.lower() if src.suffix.lower() in AVATAR_SUFFIXES else ".png"
    target = folder / f"{src.stem}{suffix}"
    n = 2
    while target.exists():
        target = folder / f"{src.stem}-{n}{suffix}"
        n += 1
    shutil.copyfile(src, target)
    log.info("avatar imported: %s -> %s", src, target)
    return target
