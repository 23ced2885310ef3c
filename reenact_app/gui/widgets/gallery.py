"""Avatar gallery: thumbnails of the bundled and user avatars, drag and drop to add, 1-9 to switch.

Thumbnails are decoded with QImageReader at thumbnail size (JPEG decodes downscaled, so even a large
portrait costs little) and an oversized or broken file gets a placeholder instead of a decode attempt.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QImageReader, QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from reenact_common.video_io import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

THUMB = 72
MAX_THUMB_SOURCE_PIXELS = 80_000_000  # refuse to decode thumbnails of absurdly large images


def load_thumbnail(path: str | Path, size: int = THUMB) -> QImage:
    """A thumbnail as a QImage (thread-safe, so AvatarService makes them off the UI thread), or a grey
    placeholder for files Qt can't (or shouldn't) decode."""
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    full = reader.size()
    if full.isValid() and full.width() * full.height() <= MAX_THUMB_SOURCE_PIXELS:
        reader.setScaledSize(full.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio))
        image = reader.read()
        if not image.isNull():
            return image
    log.debug("no thumbnail for %s: %s", path, reader.errorString())
    image = QImage(size, size, QImage.Format.Format_RGB32)
    image.fill(QColor(90, 90, 90))
    return image


class AvatarGallery(QWidget):
    """List of avatars; emits the index picked and files dropped or chosen to add."""

    avatarActivated = Signal(int)
    filesDropped = Signal(list)
    addRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.list = QListWidget()
        self.list.setViewMode(QListWidget.ViewMode.IconMode)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setGridSize(QSize(THUMB + 24, THUMB + 34))
        self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.list.setMovement(QListWidget.Movement.Static)
        self.list.setWrapping(True)
        self.list.setSelectionMode(QListWidget.SelectionMode.SingleSelection)
        self.list.setToolTip("Click or press 1-9 to switch avatar; drop image files here to add them")
        self.list.itemClicked.connect(lambda item: self.avatarActivated.emit(self.list.row(item)))
        self.list.setMinimumHeight(THUMB + 44)
        add = QPushButton("Add avatar…")
        add.setToolTip("Add an image file (Ctrl+O); you can also drag and drop images onto the window")
        add.clicked.connect(self.addRequested)
        header = QHBoxLayout()
        header.addWidget(QLabel("<b>Avatars</b>"))
        header.addStretch(1)
        header.addWidget(add)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(self.list)
        self.setAcceptDrops(True)
        self._paths: list[str] = []

    def set_avatars(self, paths: list[str], current: int = -1, thumbnails: dict[str, QImage] | None = None) -> None:
        """Rebuilds the list only when it changed. `thumbnails` (made off the UI thread) are used when
        given; missing ones are decoded here."""
        if paths != self._paths:
            self._paths = list(paths)
            self.list.clear()
            thumbnails = thumbnails or {}
            for i, path in enumerate(paths):
                label = f"{i + 1} · {Path(path).stem}" if i < 9 else Path(path).stem
                image = thumbnails.get(path)
                item = QListWidgetItem(QIcon(QPixmap.fromImage(image if image is not None else load_thumbnail(path))), label)
                item.setToolTip(path)
                item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
                self.list.addItem(item)
        self.set_current(current)

    def set_current(self, index: int) -> None:
        if 0 <= index < self.list.count():
            self.list.setCurrentRow(index)
        else:
            self.list.clearSelection()

    # drag and drop ---------------------------------------------------------------------------------
    @staticmethod
    def _image_paths(mime) -> list[str]:
        if not mime.hasUrls():
            return []
        return [u.toLocalFile() for u in mime.urls() if u.isLocalFile() and u.toLocalFile().lower().endswith(IMAGE_SUFFIXES)]

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt API
        if self._image_paths(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt API
        paths = self._image_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.filesDropped.emit(paths)
