"""Help dialog: the shortcut table and the few things a first-time user needs to know."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from reenact_app.gui.shortcuts import SHORTCUTS

INTRO = (
    "<b>Reenact</b> animates the avatar with your face. Pick an avatar, look at the camera with a relaxed, "
    "neutral face and press <b>C</b> to calibrate. Start the virtual camera (<b>V</b>) and choose "
    "<i>Reenact</i> as the camera in your video-call app.<br>"
    "Please use it responsibly: only animate people who agreed to it, and tell the people in your call."
)


class HelpDialog(QDialog):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Reenact — keyboard shortcuts")
        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        self.table = QTableWidget(len(SHORTCUTS), 2)
        self.table.setHorizontalHeaderLabels(["Key", "Action"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for row, sc in enumerate(SHORTCUTS):
            keys = "1 … 9" if sc.action == "avatar" else sc.keys
            self.table.setItem(row, 0, QTableWidgetItem(keys))
            self.table.setItem(row, 1, QTableWidgetItem(sc.description))
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(560, 520)
