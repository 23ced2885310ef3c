"""Starting the app: no bundled weights (banner, then a checkpoint), the headless screenshot mode, help, drag and drop."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtTest import QTest

pytestmark = pytest.mark.gui
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Own config dir, and an assets folder with the avatars and the demo clip but no weights."""
    assets = tmp_path / "assets"
    shutil.copytree(REPO / "assets" / "avatars", assets / "avatars")
    shutil.copytree(REPO / "assets" / "driving", assets / "driving")
    monkeypatch.setenv("REENACT_ASSETS", str(assets))
    monkeypatch.setenv("REENACT_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("REENACT_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import models

    return models.save_checkpoint(models.build_model("paper-rt"), tmp_path_factory.mktemp("ckpt") / "rand.safetensors")


def test_missing_weights_shows_banner_then_runs_a_chosen_checkpoint(qtbot, isolated, checkpoint):
    from reenact_app.gui.controller import AppController
    from reenact_app.gui.main_window import MainWindow
    from reenact_app.gui.settings import AppSettings

    controller = AppController(AppSettings(engine="torch"))
    window = MainWindow(controller)
    qtbot.addWidget(window)
    window.show()
    controller.start()
    qtbot.waitUntil(lambda: controller.idle() and controller.state.weights_missing, timeout=30000)
    assert window.banner.isVisible() and window.banner.level == "error"
    assert window.banner.text.lower().startswith("no model weights found — ")
    assert window.banner.action.isVisible() and "checkpoint" in window.banner.action.text().lower()
    assert "checkpoint" in window.preview.main.placeholder.lower()
    assert controller.pipeline is None and controller.bridge.alive  # the app keeps running
    # no camera on this machine: the demo clip drives, and the status bar says so
    controller.set_model(str(checkpoint))
    qtbot.waitUntil(lambda: controller.state.frames_shown >= 3, timeout=60000)
    assert not controller.state.weights_missing and controller.state.model_label == "rand.safetensors"
    if not controller.cameras:
        assert "demo clip" in window.status.texts()["source"]
    window.close()
    assert not controller.bridge.alive and controller.pipeline is None


def test_screenshot_mode_runs_the_real_window_headless(tmp_path, clips_dir, checkpoint):
    out = tmp_path / "shot.png"
    clip = clips_dir / "rizkiarm+LipNet" / "evaluation" / "samples" / "GRID" / "swiz3n.mpg"
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["REENACT_CONFIG_DIR"] = str(tmp_path / "config")
    env["REENACT_CACHE"] = str(tmp_path / "cache")
    cmd = [sys.executable, "-m", "reenact_app.gui.main", "--driving", str(clip), "--avatar", str(REPO / "assets/avatars/monalisa.jpg"),
           "--model", str(checkpoint), "--engine", "torch", "--frames", "8", "--screenshot", str(out)]
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    image = cv2.imread(str(out))
    assert image is not None and image.shape[1] >= 1000 and image.std() > 10
    assert "UI thread: longest stall" in proc.stdout and "latency" in proc.stdout
    assert not (tmp_path / "config" / "settings.json").exists()  # screenshot runs leave no settings behind


def test_help_dialog_lists_every_shortcut(qtbot, isolated):
    from reenact_app.gui.controller import AppController
    from reenact_app.gui.main_window import MainWindow
    from reenact_app.gui.shortcuts import SHORTCUTS

    controller = AppController()
    window = MainWindow(controller)
    qtbot.addWidget(window)
    window.show()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)  # window shortcuts need the window active
    QTest.keyClick(window, Qt.Key.Key_F1)
    dialog = window.help_dialog
    assert dialog is not None and dialog.isVisible() and not dialog.isModal()
    listed = {dialog.table.item(r, 0).text() for r in range(dialog.table.rowCount())}
    assert {"C", "V", "R", "1 … 9", "F11", "Ctrl+O"} <= listed and len(listed) == len(SHORTCUTS)
    dialog.activateWindow()
    qtbot.waitUntil(dialog.isActiveWindow, timeout=5000)
    QTest.keyClick(dialog, Qt.Key.Key_Escape)  # the main window's Esc shortcut must not swallow it
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=5000)
    assert controller.shutdown()


def test_drop_images_on_the_window_adds_avatars(qtbot, isolated):
    from reenact_app.gui.controller import AppController
    from reenact_app.gui.main_window import MainWindow

    controller = AppController()
    window = MainWindow(controller)
    qtbot.addWidget(window)
    window.show()
    count = len(controller.avatars)
    portrait = isolated / "my portrait ü.jpg"
    shutil.copyfile(REPO / "assets/avatars/gogol.jpg", portrait)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(portrait)), QUrl.fromLocalFile(str(isolated / "notes.txt"))])
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier)
    window.gallery.dropEvent(event)
    qtbot.waitUntil(lambda: controller.idle() and len(controller.avatars) == count + 1, timeout=30000)
    qtbot.waitUntil(lambda: window.gallery.list.count() == count + 1, timeout=5000)
    assert Path(controller.state.avatar_path).parent == isolated / "config" / "avatars"
    assert window.gallery.list.currentRow() == count
    assert controller.shutdown()


def test_only_the_ui_thread_writes_state_settings_and_lists(qtbot, isolated, checkpoint):
    """The command thread computes and posts its results (engine, avatar, source, sinks, the camera list,
    the avatar list and thumbnails) to the UI thread instead of writing them itself: a full start, an
    avatar added, avatar and source switches, a recording and the virtual camera, with every write (and
    every in-place change of the lists) checked for its thread."""
    import threading

    from reenact_app.capture import CameraInfo
    from reenact_app.gui.controller import AppController
    from reenact_app.gui.settings import AppSettings

    off_thread: list[tuple[str, str, str]] = []

    def check(owner: str, name: str) -> None:
        if threading.current_thread() is not threading.main_thread():
            off_thread.append((owner, name, threading.current_thread().name))

    def guarded_container(value, owner: str):
        """The same list or dict, reporting in-place changes made off the UI thread."""
        base = type(value)
        mutators = {list: ("append", "extend", "insert", "remove", "pop", "clear", "sort", "__setitem__", "__delitem__", "__iadd__"),
                    dict: ("update", "pop", "popitem", "clear", "setdefault", "__setitem__", "__delitem__")}[base]
        methods = {m: (lambda m: lambda self, *a, **k: (check(owner, m), getattr(base, m)(self, *a, **k))[1])(m) for m in mutators}
        return type(f"Guarded{base.__name__}", (base,), methods)(value)

    def guard(obj, names: set[str] | None = None) -> None:
        """Reports writes of `names` (None: every field) made off the UI thread."""
        cls = type(obj)

        def setattr_checked(self, name, value):
            if names is None or name in names:
                check(cls.__name__, name)
                if isinstance(value, (list, dict)):
                    value = guarded_container(value, f"{cls.__name__}.{name}")
            object.__setattr__(self, name, value)

        obj.__class__ = type(f"Guarded{cls.__name__}", (cls,), {"__setattr__": setattr_checked})
        for name in names or ():
            setattr(obj, name, getattr(obj, name))  # wrap the lists already there

    demo = str(REPO / "assets" / "driving" / "demo.mp4")
    settings = AppSettings(engine="torch", model_path=str(checkpoint), source="video", video_path=demo)
    guard(settings)
    controller = AppController(settings, persist=False, vcam_backend="reenact-fake", cameras=[CameraInfo(0, "Fake USB camera")])
    guard(controller.state)
    guard(controller.sources, {"cameras"})
    guard(controller.avatar_service, {"avatars", "thumbnails"})
    portrait = isolated / "portrait.jpg"
    shutil.copyfile(REPO / "assets/avatars/gogol.jpg", portrait)
    try:
        controller.start()
        qtbot.waitUntil(lambda: controller.state.frames_shown >= 3, timeout=60000)
        assert controller.sources.cameras_for_ui() == [(0, "Fake USB camera")]  # the list reached the UI thread
        count = len(controller.avatars)
        controller.add_avatars([str(portrait)])
        qtbot.waitUntil(lambda: controller.idle() and len(controller.avatars) == count + 1, timeout=30000)
        added = controller.state.avatar_path  # idle: the command's posted results are applied
        assert Path(added).name == "portrait.jpg" and not controller.thumbnails[added].isNull()
        assert controller.avatars[controller.state.avatar_index] == added
        controller.select_avatar(1)
        controller.start_recording(str(isolated / "call.mp4"))
        controller.start_virtual_camera()
        qtbot.waitUntil(lambda: controller.idle() and controller.state.recording and controller.state.vcam_on,
                        timeout=30000)
        controller.set_video(demo)
        controller.stop_recording()
        controller.stop_virtual_camera()
        qtbot.waitUntil(lambda: controller.idle() and not controller.state.recording, timeout=30000)
        assert controller.state.avatar_index == 1 and settings.avatar == controller.avatars[1]
        assert controller.state.last_recording == str(isolated / "call.mp4") and not controller.state.vcam_on
        assert controller.state.engine_label and controller.state.source_kind == "video"
    finally:
        controller.shutdown()
    assert off_thread == []
