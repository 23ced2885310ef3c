"""The large animated-avatar preview with the driving webcam as a picture-in-picture.

Painting is the only work done here: images arrive as ready QImages (converted in the worker), and are
drawn scaled to fit with QPainter, which keeps the UI thread's cost per frame to a few milliseconds.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget


def fit_rect(image_size: QSize, area: QRectF) -> QRectF:
    """The largest rectangle with the image's aspect ratio centred in `area`."""
    if image_size.isEmpty():
        return QRectF(area)
    scale = min(area.width() / image_size.width(), area.height() / image_size.height())
    w, h = image_size.width() * scale, image_size.height() * scale
    return QRectF(area.x() + (area.width() - w) / 2, area.y() + (area.height() - h) / 2, w, h)


class ImageView(QWidget):
    """Shows one image, letterboxed on black, with an optional face box and keypoints overlay."""

    doubleClicked = Signal()

    def __init__(self, placeholder: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self._image: QImage | None = None
        self._box: tuple[float, float, float, float] | None = None
        self._points: np.ndarray | None = None
        self._face_found: bool | None = None
        self.placeholder = placeholder
        self.show_keypoints = False
        self.show_box = False
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    @property
    def image(self) -> QImage | None:
        return self._image

    def set_image(self, image: QImage | None, box=None, points: np.ndarray | None = None, face_found: bool | None = None) -> None:
        self._image = image
        self._box = box
        self._points = points
        self._face_found = face_found
        self.update()

    def set_placeholder(self, text: str) -> None:
        if text == self.placeholder:
            return
        self.placeholder = text
        self.update()

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.doubleClicked.emit()
        super().mouseDoubleClickEvent(event)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(16, 16, 18))
        if self._image is None or self._image.isNull():
            painter.setPen(QColor(170, 170, 170))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.placeholder)
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        target = fit_rect(self._image.size(), QRectF(self.rect()))
        painter.drawImage(target, self._image)
        self._paint_overlay(painter, target)

    def _paint_overlay(self, painter: QPainter, target: QRectF) -> None:
        sx = target.width() / max(1, self._image.width())
        sy = target.height() / max(1, self._image.height())
        if self.show_box and self._box is not None:
            x0, y0, x1, y1 = self._box
            color = QColor(60, 220, 120) if self._face_found is not False else QColor(230, 160, 40)
            painter.setPen(QPen(color, 2))
            painter.drawRect(QRectF(target.x() + x0 * sx, target.y() + y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy))
        if self.show_keypoints and self._points is not None and len(self._points):
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(255, 80, 80))
            r = max(1.5, min(3.0, target.width() / 200))
            for x, y in np.asarray(self._points, dtype=np.float32)[:, :2]:
                painter.drawEllipse(QPointF(target.x() + x * sx, target.y() + y * sy), r, r)


class PreviewWidget(QWidget):
    """Main view (animated avatar) with the driving view as a corner inset that follows resizes."""

    fullScreenRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.main = ImageView("Starting…", self)
        self.pip = ImageView("no driving video", self)
        self.pip.show_box = True
        self.pip.setToolTip("Driving video: face box and (K) keypoints")
        self.main.doubleClicked.connect(self.fullScreenRequested)
        self.pip_fraction = 0.28
        self.setMinimumSize(320, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(800, 600)

    def set_show_keypoints(self, on: bool) -> None:
        self.pip.show_keypoints = on
        self.pip.update()

    def set_pip_visible(self, on: bool) -> None:
        self.pip.setVisible(on)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.main.setGeometry(self.rect())
        w = max(120, int(self.width() * self.pip_fraction))
        h = int(w * 3 / 4)
        margin = 10
        self.pip.setGeometry(self.width() - w - margin, self.height() - h - margin, w, h)
        self.pip.raise_()
        super().resizeEvent(event)
