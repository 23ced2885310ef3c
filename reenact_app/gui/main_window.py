"""The main window: a view of AppController state. It holds no pipeline logic of its own.

Everything the user does becomes a controller call; everything the controller reports (frames, state,
messages, busy work) arrives through signals on the UI thread and is only displayed here.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from reenact_app import __version__
from reenact_app.gui.controller import AppController
from reenact_app.gui.help_dialog import HelpDialog
from reenact_app.gui.shortcuts import SHORTCUTS
from reenact_app.gui.widgets.banner import Banner
from reenact_app.gui.widgets.controls import ControlsPanel
from reenact_app.gui.widgets.gallery import AvatarGallery
from reenact_common.video_io import IMAGE_SUFFIXES
from reenact_app.gui.widgets.preview import PreviewWidget
from reenact_app.gui.widgets.status import StatusPanel

log = logging.getLogger(__name__)

VIDEO_FILTER = "Videos (*.mp4 *.avi *.mov *.mkv *.mpg *.webm);;All files (*)"
IMAGE_FILTER = "Images (" + " ".join(f"*{s}" for s in IMAGE_SUFFIXES) + ");;All files (*)"
MODEL_FILTER = "Checkpoints (*.safetensors *.pth *.pth.tar *.tar *.pt);;All files (*)"


class MainWindow(QMainWindow):
    def __init__(self, controller: AppController):
        super().__init__()
        self.controller = controller
        self.setWindowTitle(f"Reenact {__version__}")
        self.setAcceptDrops(True)
        self.help_dialog: HelpDialog | None = None
        self._build()
        self._build_menus()
        self._build_shortcuts()
        self._connect()
        self.controls.apply_settings(controller.settings)
        self.preview.set_show_keypoints(controller.settings.show_keypoints)
        self._refresh_avatars()
        self._refresh_state()
        self._restore_geometry()

    # layout --------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.banner = Banner()
        self.preview = PreviewWidget()
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(6, 6, 0, 6)
        left_layout.addWidget(self.banner)
        left_layout.addWidget(self.preview, 1)
        self.gallery = AvatarGallery()
        self.controls = ControlsPanel()
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.addWidget(self.gallery)
        side_layout.addWidget(self.controls, 1)
        scroll = QScrollArea()
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(330)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.side = scroll
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(scroll)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 0)
        splitter.setSizes([860, 340])
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self.setCentralWidget(central)
        self.status = StatusPanel(self.statusBar())
        self.resize(1200, 760)

    def _action(self, menu, text: str, slot, shortcut: str | None = None) -> QAction:
        action = QAction(text, self)
        action.triggered.connect(slot)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "Add avatar…", self.add_avatar_dialog)
        self._action(file_menu, "Open driving video…", self.choose_video_dialog)
        self._action(file_menu, "Load model checkpoint…", self.choose_model_dialog)
        file_menu.addSeparator()
        self._action(file_menu, "Reset settings to defaults", self.reset_settings)
        file_menu.addSeparator()
        self._action(file_menu, "Quit", self.close)
        view_menu = bar.addMenu("&View")
        self._action(view_menu, "Full-screen preview", self.toggle_full_screen)
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "Keyboard shortcuts", self.show_help)
        self._action(help_menu, "About Reenact", self.show_about)

    def _build_shortcuts(self) -> None:
        """Keys from the shared SHORTCUTS table (the Help dialog lists the same table). Window context,
        not application: Esc and letters must keep working normally inside dialogs."""
        c = self.controller
        handlers = {
            "calibrate": c.calibrate,
            "toggle_virtual_camera": lambda: self.controls.vcam_button.toggle(),
            "toggle_recording": lambda: self.controls.record_button.toggle(),
            "toggle_freeze_crop": lambda: c.toggle_option("freeze_crop"),
            "redetect": c.redetect,
            "toggle_mirror": lambda: c.toggle_option("mirror"),
            "toggle_paste_back": lambda: c.toggle_option("paste_back"),
            "toggle_keypoints": lambda: c.toggle_option("show_keypoints"),
            "toggle_relative": lambda: c.toggle_option("relative"),
            "expression_up": lambda: c.step_expression(1),
            "expression_down": lambda: c.step_expression(-1),
            "toggle_full_screen": self.toggle_full_screen,
            "leave_full_screen": self.leave_full_screen,
            "add_avatar": self.add_avatar_dialog,
            "choose_model": self.choose_model_dialog,
            "help": self.show_help,
            "quit": self.close,
        }
        self.shortcuts: dict[str, QShortcut] = {}
        for sc in SHORTCUTS:
            if sc.action == "avatar":
                for n in range(1, 10):
                    s = QShortcut(QKeySequence(str(n)), self)
                    s.setContext(Qt.ShortcutContext.WindowShortcut)
                    s.activated.connect(lambda n=n: c.select_avatar(n - 1))
                    self.shortcuts[f"avatar{n}"] = s
                continue
            s = QShortcut(QKeySequence(sc.keys), self)
            s.setContext(Qt.ShortcutContext.WindowShortcut)
            s.activated.connect(handlers[sc.action])
            self.shortcuts[sc.action] = s

    def _connect(self) -> None:
        c = self.controller
        c.frameReady.connect(self._show_frame)
        c.stateChanged.connect(self._refresh_state)
        c.avatarsChanged.connect(self._refresh_avatars)
        c.settingsChanged.connect(self._settings_changed)
        c.messageRaised.connect(self._show_message)
        c.busyChanged.connect(self.status.set_busy)
        self.banner.actionTriggered.connect(self._banner_action)
        self.gallery.avatarActivated.connect(c.select_avatar)
        self.gallery.filesDropped.connect(c.add_avatars)
        self.gallery.addRequested.connect(self.add_avatar_dialog)
        ctl = self.controls
        ctl.optionChanged.connect(self._option_changed)
        ctl.calibrateRequested.connect(c.calibrate)
        ctl.redetectRequested.connect(c.redetect)
        ctl.chooseVideoRequested.connect(self.choose_video_dialog)
        ctl.chooseModelRequested.connect(self.choose_model_dialog)
        ctl.virtualCameraToggled.connect(lambda on: c.start_virtual_camera() if on else c.stop_virtual_camera())
        ctl.recordToggled.connect(lambda on: c.start_recording() if on else c.stop_recording())
        ctl.fullScreenRequested.connect(self.toggle_full_screen)
        self.preview.fullScreenRequested.connect(self.toggle_full_screen)

    # controller -> view --------------------------------------------------------------------------
    def _show_frame(self, packet) -> None:
        self.preview.main.set_image(packet.output)
        if packet.driving is not None:
            self.preview.pip.set_image(packet.driving, packet.face_box, packet.keypoints, packet.face_found)
        elif packet.stats.get("state") == "source-lost":
            self.preview.pip.set_placeholder("driving video lost: reconnecting…")
            self.preview.pip.set_image(None)

    def _refresh_state(self) -> None:
        c = self.controller
        state = c.state
        self.status.update_from(state)
        self.controls.set_virtual_camera_checked(state.vcam_on, "Stop virtual cam (V)" if state.vcam_on else "Start virtual cam (V)")
        self.controls.set_recording_checked(state.recording)
        self.controls.set_model_label(state.model_label)
        self.controls.set_sources(c.sources.cameras_for_ui(), c.sources.video_label(c.settings))
        self.controls.select_source(state.source_kind, c.settings.camera_index)
        self.gallery.set_current(state.avatar_index)
        if state.placeholder:
            self.preview.main.set_placeholder(state.placeholder)

    def _refresh_avatars(self) -> None:
        c = self.controller
        self.gallery.set_avatars(c.avatars, c.state.avatar_index, c.thumbnails)

    def _settings_changed(self) -> None:
        s = self.controller.settings
        self.controls.apply_settings(s)
        self.preview.set_show_keypoints(s.show_keypoints)

    def _show_message(self, level: str, text: str, fix: str, action: str, action_key: str) -> None:
        if level == "clear":
            if self.banner.text == text or not text:
                self.banner.dismiss()
            return
        self.banner.show_message(level, text, fix, action, action_key)
        if level == "info":
            self.statusBar().showMessage(text, 8000)

    def _banner_action(self, key: str) -> None:
        if key == "choose_model":
            self.choose_model_dialog()
        elif key == "accept_center_crop":
            self.controller.accept_center_crop()
        elif key == "choose_video":
            self.choose_video_dialog()
        self.banner.dismiss()

    def _option_changed(self, name: str, value) -> None:
        if name == "source_choice":
            kind, index = value
            self.controller.set_source(kind, index)
        else:
            self.controller.set_option(name, value)

    # dialogs ---------------------------------------------------------------------------------------
    def add_avatar_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Add avatar images", str(Path.home()), IMAGE_FILTER)
        if paths:
            self.controller.add_avatars(paths)

    def choose_video_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Driving video", str(Path.home()), VIDEO_FILTER)
        if path:
            self.controller.set_video(path)

    def choose_model_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model checkpoint", str(Path.home()), MODEL_FILTER)
        if not path:
            return
        config = ""
        if not path.endswith(".safetensors"):
            # an upstream FOMM checkpoint (.pth.tar) needs its YAML config; ours are self-describing
            yaml_guess = Path(path).with_suffix("").with_suffix(".yaml")
            start = str(yaml_guess if yaml_guess.exists() else Path(path).parent)
            config, _ = QFileDialog.getOpenFileName(self, "Upstream FOMM config (Cancel if not needed)", start, "YAML (*.yaml *.yml)")
        self.controller.set_model(path, config)

    def reset_settings(self) -> None:
        answer = QMessageBox.question(self, "Reset settings", "Reset all settings to their defaults?")
        if answer == QMessageBox.StandardButton.Yes:
            self.controller.reset_settings()

    def show_help(self) -> None:
        if self.help_dialog is None:
            self.help_dialog = HelpDialog(self)
        self.help_dialog.show()
        self.help_dialog.raise_()

    def show_about(self) -> None:
        QMessageBox.about(self, "About Reenact", f"Reenact {__version__}<br>Real-time face reenactment for video calls.<br>"
                          "Bundled media: see assets/ATTRIBUTION.md.")

    # full screen -----------------------------------------------------------------------------------
    def toggle_full_screen(self) -> None:
        if self.isFullScreen():
            self.leave_full_screen()
        else:
            self.side.hide()
            self.menuBar().hide()
            self.statusBar().hide()
            self.showFullScreen()

    def leave_full_screen(self) -> None:
        if self.isFullScreen():
            self.side.show()
            self.menuBar().show()
            self.statusBar().show()
            self.showNormal()

    # drag and drop anywhere on the window adds avatars -----------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.gallery.dragEnterEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.gallery.dropEvent(event)

    # lifetime -----------------------------------------------------------------------------------------
    def _restore_geometry(self) -> None:
        geometry = self.controller.settings.window_geometry
        if geometry:
            try:
                self.restoreGeometry(QByteArray.fromBase64(geometry.encode("ascii")))
            except Exception:  # noqa: BLE001 - a stale geometry blob must not stop the app
                log.debug("could not restore window geometry")

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt API
        self.controller.settings.window_geometry = bytes(self.saveGeometry().toBase64()).decode("ascii")
        self.controller.shutdown()
        super().closeEvent(event)

    def grab_screenshot(self, path: str | Path) -> bool:
        """Renders the real window (not a mock-up) to an image file."""
        return self.grab().save(str(path))
