"""The side panel: driving source, motion, crop, output, engine/model and the call actions.

Every control maps to one AppSettings field: it emits `optionChanged(field, value)` and the controller
decides what to do; `apply_settings` refreshes the widgets without re-emitting (signals blocked), so a
settings reset or a restart shows exactly what is stored.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QPushButton,
    QRadioButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from reenact_app.gui.settings import (
    ENGINE_CHOICES, EXPRESSION_MAX, EXPRESSION_STEP, OUTPUT_RESOLUTIONS, RESOLUTIONS, AppSettings,
)

def source_key(kind: str, camera_index: int = -1) -> str:
    """Item data of the source selector: "camera:N" or "video" (strings survive QVariant unchanged)."""
    return f"camera:{camera_index}" if kind == "camera" else "video"


ENGINE_LABELS = {"auto": "Auto (best available)", "tensorrt": "TensorRT", "onnxruntime": "ONNX Runtime", "torch": "PyTorch"}


class ControlsPanel(QWidget):
    optionChanged = Signal(str, object)  # AppSettings field name, new value
    calibrateRequested = Signal()
    redetectRequested = Signal()
    chooseVideoRequested = Signal()
    chooseModelRequested = Signal()
    virtualCameraToggled = Signal(bool)
    recordToggled = Signal(bool)
    fullScreenRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._widgets: dict[str, QWidget] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._actions_group())  # what a user in a call needs first
        layout.addWidget(self._motion_group())
        layout.addWidget(self._source_group())
        layout.addWidget(self._crop_group())
        layout.addWidget(self._output_group())
        layout.addWidget(self._engine_group())
        layout.addStretch(1)

    # construction --------------------------------------------------------------------------------
    def _check(self, name: str, text: str, tip: str) -> QCheckBox:
        box = QCheckBox(text)
        box.setToolTip(tip)
        box.toggled.connect(lambda on: self.optionChanged.emit(name, bool(on)))
        self._widgets[name] = box
        return box

    def _combo(self, name: str, items: list[tuple[str, str]], tip: str) -> QComboBox:
        combo = QComboBox()
        combo.setToolTip(tip)
        for label, value in items:
            combo.addItem(label, value)
        combo.currentIndexChanged.connect(lambda _i: self.optionChanged.emit(name, combo.currentData()))
        self._widgets[name] = combo
        return combo

    def _source_group(self) -> QGroupBox:
        group = QGroupBox("Driving source")
        form = QFormLayout(group)
        self.source_combo = QComboBox()
        self.source_combo.setToolTip("Webcam or a video file drives the avatar")
        self.source_combo.currentIndexChanged.connect(self._source_changed)
        form.addRow("Source", self.source_combo)
        self.resolution_combo = self._combo("camera_resolution", [(r, r) for r in RESOLUTIONS], "Requested camera resolution")
        form.addRow("Resolution", self.resolution_combo)
        self.video_button = QPushButton("Video file…")
        self.video_button.setToolTip("Drive the avatar with a video file instead of the webcam")
        self.video_button.clicked.connect(self.chooseVideoRequested)
        form.addRow(self.video_button)
        return group

    def set_sources(self, cameras: list[tuple[int, str]], video_label: str) -> None:
        """Fills the source selector: enumerated cameras, then the current video file (only if changed,
        so a periodic refresh never closes an open popup)."""
        key = (tuple(cameras), video_label)
        if getattr(self, "_sources_key", None) == key:
            return
        self._sources_key = key
        self.source_combo.blockSignals(True)
        self.source_combo.clear()
        for index, name in cameras:
            self.source_combo.addItem(name, source_key("camera", index))
        self.source_combo.addItem(video_label, source_key("video"))
        self.source_combo.blockSignals(False)

    def select_source(self, kind: str, camera_index: int) -> None:
        i = self.source_combo.findData(source_key(kind, camera_index))
        if i >= 0:
            self.source_combo.blockSignals(True)
            self.source_combo.setCurrentIndex(i)
            self.source_combo.blockSignals(False)

    def _source_changed(self, _index: int) -> None:
        data = self.source_combo.currentData()
        if data:
            kind, _, index = str(data).partition(":")
            self.optionChanged.emit("source_choice", (kind, int(index or -1)))

    def _motion_group(self) -> QGroupBox:
        group = QGroupBox("Motion")
        form = QFormLayout(group)
        self.calibrate_button = QPushButton("Calibrate (C)")
        self.calibrate_button.setToolTip("Take your current pose as the neutral reference: look at the camera, relax, press C")
        self.calibrate_button.clicked.connect(self.calibrateRequested)
        form.addRow(self.calibrate_button)
        row = QHBoxLayout()
        self.relative_radio = QRadioButton("Relative")
        self.relative_radio.setToolTip("Transfer motion since calibration (keeps the avatar's own face shape)")
        self.absolute_radio = QRadioButton("Absolute")
        self.absolute_radio.setToolTip("Use the driving face's keypoints as they are")
        group_buttons = QButtonGroup(self)
        group_buttons.addButton(self.relative_radio)
        group_buttons.addButton(self.absolute_radio)
        self.relative_radio.toggled.connect(lambda on: self.optionChanged.emit("relative", bool(on)))
        row.addWidget(self.relative_radio)
        row.addWidget(self.absolute_radio)
        form.addRow("Mode", row)
        form.addRow(self._check("adapt_scale", "Adapt scale", "Scale motion by the avatar/driver face-size ratio"))
        self.smoothing_slider = QSlider(Qt.Orientation.Horizontal)
        self.smoothing_slider.setRange(0, 100)
        self.smoothing_slider.setToolTip("Keypoint and crop smoothing: more removes jitter, less reacts faster")
        self.smoothing_slider.valueChanged.connect(lambda v: self.optionChanged.emit("smoothing", v / 100.0))
        self._widgets["smoothing"] = self.smoothing_slider
        form.addRow("Smoothing", self.smoothing_slider)
        self.expression_slider = QSlider(Qt.Orientation.Horizontal)
        self.expression_slider.setRange(0, int(EXPRESSION_MAX * 100))
        self.expression_slider.setSingleStep(int(EXPRESSION_STEP * 100))
        self.expression_slider.setPageStep(int(EXPRESSION_STEP * 100))
        self.expression_slider.setToolTip("How strongly your mouth and eye openness carry over to the avatar "
                                          "([ and ] keys). 0: off; the middle: as you do; right: exaggerated")
        self.expression_slider.valueChanged.connect(lambda v: self.optionChanged.emit("expression", v / 100.0))
        self._widgets["expression"] = self.expression_slider
        form.addRow("Expression", self.expression_slider)
        return group

    def _crop_group(self) -> QGroupBox:
        group = QGroupBox("Face crop")
        form = QFormLayout(group)
        self.margin_spin = QDoubleSpinBox()
        self.margin_spin.setRange(0.0, 2.0)
        self.margin_spin.setSingleStep(0.05)
        self.margin_spin.setToolTip("Room around the detected face, as a fraction of its size")
        self.margin_spin.valueChanged.connect(lambda v: self.optionChanged.emit("crop_margin", float(v)))
        self._widgets["crop_margin"] = self.margin_spin
        form.addRow("Margin", self.margin_spin)
        form.addRow(self._check("freeze_crop", "Freeze crop (F)", "Keep the crop where it is, as in a call with a fixed camera"))
        self.redetect_button = QPushButton("Re-detect face (D)")
        self.redetect_button.clicked.connect(self.redetectRequested)
        form.addRow(self.redetect_button)
        form.addRow(self._check("mirror", "Mirror (M)", "Flip the driving video horizontally, like a mirror"))
        return group

    def _output_group(self) -> QGroupBox:
        group = QGroupBox("Output")
        form = QFormLayout(group)
        form.addRow(self._check("paste_back", "Paste back into portrait (P)", "Blend the animated face back into the whole avatar picture"))
        form.addRow(self._check("full_resolution", "Full resolution",
                                "Show the avatar's own pixels, moved, wherever the model sees them, at the picture's "
                                "resolution (off: the model's 256 px face upscaled, softer)"))
        form.addRow(self._check("show_keypoints", "Show keypoints (K)", "Draw the tracked landmarks on the driving view"))
        form.addRow("Resolution", self._combo("output_resolution", [(r, r) for r in OUTPUT_RESOLUTIONS], "Virtual camera and recording size"))
        form.addRow(self._check("record_side_by_side", "Record driver side by side", "Recordings show the driving video next to the avatar"))
        return group

    def _engine_group(self) -> QGroupBox:
        group = QGroupBox("Engine and model")
        form = QFormLayout(group)
        form.addRow("Engine", self._combo("engine", [(ENGINE_LABELS[e], e) for e in ENGINE_CHOICES], "Inference backend; Auto picks the fastest that works here"))
        form.addRow(self._check("avatar_detail", "Avatar detail", "Take fine detail (texture, hair, brush strokes) from the avatar where the "
                                "model sees it; off shows the model's own softer output. Only for weights with the warped-source blend"))
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("Bundled weights, or a checkpoint file (ours or an upstream FOMM .pth.tar with its .yaml)")
        self.model_combo.activated.connect(self._model_activated)
        form.addRow("Model", self.model_combo)
        return group

    def set_model_label(self, label: str) -> None:
        if self.model_combo.count() and self.model_combo.itemText(0) == label:
            return
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItem(label, "current")
        self.model_combo.addItem("Bundled weights", "bundled")
        self.model_combo.addItem("Checkpoint file…", "choose")
        self.model_combo.setCurrentIndex(0)
        self.model_combo.blockSignals(False)

    def _model_activated(self, index: int) -> None:
        data = self.model_combo.itemData(index)
        self.model_combo.setCurrentIndex(0)
        if data == "bundled":
            self.optionChanged.emit("model_path", "")
        elif data == "choose":
            self.chooseModelRequested.emit()

    def _actions_group(self) -> QGroupBox:
        group = QGroupBox("Call")
        layout = QVBoxLayout(group)
        row = QHBoxLayout()
        self.vcam_button = QPushButton("Start virtual cam (V)")
        self.vcam_button.setMinimumWidth(150)
        self.vcam_button.setCheckable(True)
        self.vcam_button.setToolTip("Send the avatar to video-call apps as a webcam")
        self.vcam_button.toggled.connect(self.virtualCameraToggled)
        self.record_button = QPushButton("Record (R)")
        self.record_button.setCheckable(True)
        self.record_button.setToolTip("Record the output to an MP4 file")
        self.record_button.toggled.connect(self.recordToggled)
        full = QPushButton("Full-screen preview (F11)")
        full.clicked.connect(self.fullScreenRequested)
        row.addWidget(self.vcam_button, 3)
        row.addWidget(self.record_button, 2)
        layout.addLayout(row)
        layout.addWidget(full)
        return group

    # state -> widgets ----------------------------------------------------------------------------
    def apply_settings(self, s: AppSettings) -> None:
        """Shows `s` without emitting optionChanged."""
        for w in list(self._widgets.values()) + [self.relative_radio, self.absolute_radio]:
            w.blockSignals(True)
        try:
            for name in ("adapt_scale", "freeze_crop", "mirror", "paste_back", "full_resolution", "show_keypoints",
                         "record_side_by_side", "avatar_detail"):
                self._widgets[name].setChecked(bool(getattr(s, name)))
            self.relative_radio.setChecked(s.relative)
            self.absolute_radio.setChecked(not s.relative)
            self.smoothing_slider.setValue(int(round(s.smoothing * 100)))
            self.expression_slider.setValue(int(round(s.expression * 100)))
            self.margin_spin.setValue(s.crop_margin)
            for name in ("camera_resolution", "output_resolution", "engine"):
                combo: QComboBox = self._widgets[name]
                i = combo.findData(getattr(s, name))
                combo.setCurrentIndex(max(0, i))
        finally:
            for w in list(self._widgets.values()) + [self.relative_radio, self.absolute_radio]:
                w.blockSignals(False)

    def set_virtual_camera_checked(self, on: bool, label: str) -> None:
        self.vcam_button.blockSignals(True)
        self.vcam_button.setChecked(on)
        self.vcam_button.setText(label)
        self.vcam_button.blockSignals(False)

    def set_recording_checked(self, on: bool) -> None:
        self.record_button.blockSignals(True)
        self.record_button.setChecked(on)
        self.record_button.setText("Stop rec (R)" if on else "Record (R)")
        self.record_button.blockSignals(False)
