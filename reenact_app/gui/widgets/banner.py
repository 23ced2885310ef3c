"""A non-modal message strip above the preview: the problem, the fix, an optional action.

Modal dialogs would stop a live call; a banner leaves the preview (and the virtual camera) running
while the user reads the fix. The fix text is selectable so a shell command can be copied.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QVBoxLayout, QWidget

INFO_SECONDS = 8

_STYLES = {
    "error": "background:#5a1e1e; color:#ffe9e9; border:1px solid #a33;",
    "warning": "background:#5a4a14; color:#fff6da; border:1px solid #b8962a;",
    "info": "background:#1e3a5a; color:#e6f1ff; border:1px solid #3a6ea5;",
}


class Banner(QFrame):
    """Shows one message at a time; a new message replaces the old one. `actionTriggered` carries the key."""

    actionTriggered = Signal(str)
    dismissed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("banner")
        self.level = ""
        self.text = ""
        self.fix = ""
        self._action_key = ""
        self._autohide = QTimer(self)
        self._autohide.setSingleShot(True)
        self._autohide.timeout.connect(self.dismiss)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.fix_label = QLabel()
        self.fix_label.setWordWrap(True)
        self.fix_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.fix_label.setStyleSheet("font-family: monospace;")
        self.action = QPushButton()
        self.action.clicked.connect(lambda: self.actionTriggered.emit(self._action_key))
        close = QToolButton()
        close.setText("✕")
        close.setToolTip("Dismiss")
        close.setAutoRaise(True)
        close.clicked.connect(self.dismiss)
        texts = QVBoxLayout()
        texts.setContentsMargins(0, 0, 0, 0)
        texts.addWidget(self.label)
        texts.addWidget(self.fix_label)
        row = QHBoxLayout(self)
        row.setContentsMargins(10, 6, 6, 6)
        row.addLayout(texts, 1)
        row.addWidget(self.action)
        row.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def show_message(self, level: str, text: str, fix: str = "", action: str = "", action_key: str = "") -> None:
        self.level, self.text, self.fix = level, text, fix
        self._action_key = action_key
        self.setStyleSheet(f"QFrame#banner {{{_STYLES.get(level, _STYLES['info'])} border-radius:4px;}}"
                           f" QLabel {{ {_STYLES.get(level, _STYLES['info']).split(';')[1]}; border:none; }}")
        self.label.setText(text)
        self.fix_label.setText(fix)
        self.fix_label.setVisible(bool(fix))
        self.action.setText(action)
        self.action.setVisible(bool(action))
        self.show()
        # problems stay until dismissed; plain information goes away by itself
        if level == "info" and not action:
            self._autohide.start(INFO_SECONDS * 1000)
        else:
            self._autohide.stop()

    def dismiss(self) -> None:
        self.level = self.text = self.fix = ""
        self.hide()
        self.dismissed.emit()
