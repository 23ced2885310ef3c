"""Status bar contents: engine, fps, latency, face, virtual camera, source, and a busy indicator."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar


class StatusPanel:
    """Permanent labels in a QStatusBar; `update_from(state)` refreshes them from the controller state."""

    def __init__(self, bar: QStatusBar):
        self.bar = bar
        self.busy_label = QLabel()
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)  # indeterminate: model load / engine build have no reliable percentage
        self.busy.setMaximumWidth(120)
        self.busy.setMaximumHeight(14)
        self.labels: dict[str, QLabel] = {}
        bar.addWidget(self.busy_label)
        bar.addWidget(self.busy)
        for key, tip in (
            ("source", "Driving source"),
            ("engine", "Inference engine and device"),
            ("fps", "Output frames per second"),
            ("latency", "End-to-end latency: camera frame to output"),
            ("face", "Face tracking in the driving video"),
            ("vcam", "Virtual camera"),
            ("rec", "Recording"),
        ):
            label = QLabel()
            label.setToolTip(tip)
            self.labels[key] = label
            bar.addPermanentWidget(label)
        self.set_busy("")

    def set_busy(self, text: str) -> None:
        self.busy_label.setText(f"{text}…" if text else "")
        self.busy.setVisible(bool(text))
        self.busy_label.setVisible(bool(text))

    def update_from(self, state) -> None:
        face = {True: "face ✓", False: "no face", None: "face –"}[state.face_found]
        values = {
            "source": state.source_label,
            "engine": state.engine_label or "no engine",
            "fps": f"{state.fps:4.1f} fps",
            "latency": f"{state.latency_ms:3.0f} ms" if state.latency_ms else "– ms",
            "face": face,
            "vcam": f"vcam: {state.vcam}",
            "rec": f"● REC {state.recording_name}" if state.recording else "",
        }
        for key, text in values.items():
            label = self.labels[key]
            if label.text() != text:
                label.setText(text)
        self.labels["rec"].setVisible(bool(state.recording))
        detail = state.engine_detail.replace("; ", "\n")
        if self.labels["engine"].toolTip() != detail:
            self.labels["engine"].setToolTip(detail or "Inference engine and device")
        self.labels["face"].setStyleSheet("color:#d08020;" if state.face_found is False else "")

    def texts(self) -> dict[str, str]:
        return {k: v.text() for k, v in self.labels.items()}


