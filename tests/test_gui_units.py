"""Desktop app building blocks without a running window: settings, display checks, avatar files, worker bridge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from reenact_common.errors import MediaError
from reenact_app.gui import app as gui_app
from reenact_app.gui.app import (debian_package, has_display, missing_system_libraries, parse_ldd_missing,
                                 remove_cv2_qt_overrides, uses_xcb)
from reenact_app.gui.settings import AppSettings, load_settings, reset_settings, save_settings, settings_path

pytestmark = pytest.mark.gui
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    folder = tmp_path / "config dir ü"  # spaces and non-ASCII on purpose
    monkeypatch.setenv("REENACT_CONFIG_DIR", str(folder))
    return folder


def test_settings_roundtrip_and_reset(config_dir):
    s = AppSettings(mirror=False, smoothing=0.2, engine="torch", avatar="/x/ä.png", output_resolution="1280x720")
    path = save_settings(s)
    assert path == settings_path() and path.parent == config_dir
    assert load_settings() == s
    assert reset_settings() == AppSettings()
    assert load_settings() == AppSettings()


def test_settings_forgive_bad_files(config_dir):
    config_dir.mkdir(parents=True)
    settings_path().write_text(json.dumps({
        "mirror": "yes", "smoothing": 7, "engine": "warp-drive", "camera_index": True,
        "crop_margin": 0.3, "unknown_key": 1, "output_resolution": "3x",
    }))
    s = load_settings()
    assert s.mirror is True and s.smoothing == 1.0 and s.engine == "auto" and s.camera_index == 0
    assert s.crop_margin == 0.3 and s.output_resolution == "640x480"
    settings_path().write_text("{not json")
    assert load_settings() == AppSettings()
    settings_path().write_text("[1, 2]")
    assert load_settings() == AppSettings()


def test_display_detection():
    assert has_display({"QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert not has_display({}, "linux")
    assert not has_display({"DISPLAY": ":987"}, "linux")  # no such X server socket
    assert has_display({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert has_display({}, "win32")


def test_which_platform_plugin_qt_will_use():
    assert uses_xcb({"DISPLAY": ":0"}, "linux")
    assert uses_xcb({"QT_QPA_PLATFORM": "xcb:nograb"}, "linux")
    assert not uses_xcb({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert not uses_xcb({"QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert not uses_xcb({"QT_QPA_PLATFORM": "wayland;xcb"}, "linux")
    assert not uses_xcb({"DISPLAY": ":0"}, "darwin")


def test_missing_libraries_named_with_their_debian_packages():
    # ldd's output for PySide6 6.x's libqxcb.so on a fresh Debian 12 with Xvfb installed (seen here)
    ldd = ("\tlibQt6XcbQpa.so.6 => /x/PySide6/Qt/lib/libQt6XcbQpa.so.6 (0x00007f)\n"
           "\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f)\n"
           "\tlibxcb-icccm.so.4 => not found\n\tlibxcb-keysyms.so.1 => not found\n"
           "\tlibxcb-icccm.so.4 => not found\n\tlinux-vdso.so.1 (0x00007ffc)\n")
    assert parse_ldd_missing(ldd) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert [debian_package(n) for n in ("libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-cursor.so.0",
                                        "libxkbcommon-x11.so.0", "libX11-xcb.so.1", "libxcb-render-util.so.0")] == [
        "libxcb-icccm4", "libxcb-keysyms1", "libxcb-cursor0", "libxkbcommon-x11-0", "libx11-xcb1", "libxcb-render-util0"]
    message = gui_app.missing_libraries_message(["libxcb-icccm.so.4", "libxcb-keysyms.so.1"])
    assert "sudo apt install libxcb-icccm4 libxcb-keysyms1" in message and "--offscreen" in message


def test_missing_libraries_found_by_ldd_on_a_real_library(tmp_path):
    """A real shared library linked against one that is then deleted: ldd must name exactly that one."""
    import shutil

    if shutil.which("cc") is None or shutil.which("ldd") is None:
        pytest.skip("needs a C compiler and ldd")
    (tmp_path / "gone.c").write_text("int gone(void) { return 1; }\n")
    (tmp_path / "plugin.c").write_text("int gone(void);\nint plugin(void) { return gone(); }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / "libgone.so.3"), str(tmp_path / "gone.c"),
                    "-Wl,-soname,libgone.so.3"], check=True)
    (tmp_path / "libgone.so").symlink_to("libgone.so.3")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / "libqxcb.so"), str(tmp_path / "plugin.c"),
                    f"-L{tmp_path}", "-lgone"], check=True)
    assert missing_system_libraries(tmp_path / "libqxcb.so") == ["libgone.so.3"]
    assert missing_system_libraries(tmp_path / "no-such-plugin.so") == []  # cannot tell: Qt is left to try
    plugin = gui_app.xcb_plugin()  # PySide6's own plugin: whatever ldd reports missing really is absent
    if plugin is not None:
        import ctypes

        for name in missing_system_libraries(plugin):
            with pytest.raises(OSError):
                ctypes.CDLL(name)


def test_app_refuses_to_start_with_a_clear_line_when_x11_libraries_are_missing(monkeypatch, capsys):
    from reenact_app.gui.main import main

    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(gui_app, "has_display", lambda *a, **k: True)
    monkeypatch.setattr(gui_app, "missing_system_libraries", lambda *a, **k: ["libxcb-keysyms.so.1"])
    assert main([]) == 2  # returns before any QApplication exists (Qt would abort the process)
    err = capsys.readouterr().err
    assert "libxcb-keysyms.so.1" in err and "sudo apt install libxcb-keysyms1" in err


def test_cv2_qt_override_removed():
    import cv2 as _cv2

    cv2_dir = str(Path(_cv2.__file__).parent)
    env = {"QT_QPA_PLATFORM_PLUGIN_PATH": f"{cv2_dir}/qt/plugins", "QT_QPA_FONTDIR": f"{cv2_dir}/qt/fonts",
           "QT_PLUGIN_PATH": "/opt/mine"}
    assert sorted(remove_cv2_qt_overrides(env)) == ["QT_QPA_FONTDIR", "QT_QPA_PLATFORM_PLUGIN_PATH"]
    assert env == {"QT_PLUGIN_PATH": "/opt/mine"}


def test_qt_starts_after_importing_cv2():
    """`import cv2` points Qt at OpenCV's own plugins; create_application must undo that or Qt aborts."""
    code = ("import cv2, os; assert 'cv2' in os.environ.get('QT_QPA_PLATFORM_PLUGIN_PATH', 'cv2'); "
            "from reenact_app.gui.app import create_application; app = create_application(offscreen=True); "
            "print(app.platformName())")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "offscreen", proc.stderr[-2000:]


def test_no_display_prints_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["REENACT_CONFIG_DIR"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "reenact_app.gui.main"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for hint in ("--screenshot", "reenact live", "reenact animate"):
        assert hint in lines[0]
    assert "Traceback" not in proc.stderr and not proc.stdout.strip()


def _write(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), image)
    return path


def test_avatar_loading_hostile_and_odd_files(tmp_path, clips_dir):
    from reenact_app.gui.avatars import load_avatar_image

    src = cv2.imread(str(REPO / "assets" / "avatars" / "monalisa.jpg"))
    (tmp_path / "random.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    good = (REPO / "assets" / "avatars" / "gogol.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(good[:200])
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("random.jpg", "truncated.jpg", "empty.png", "missing.png"):
        with pytest.raises(MediaError):
            load_avatar_image(tmp_path / name)
    with pytest.raises(MediaError, match="pixels"):
        load_avatar_image(_write(tmp_path / "tiny.png", np.zeros((1, 1, 3), np.uint8)))
    grey = load_avatar_image(_write(tmp_path / "grey.png", cv2.cvtColor(src, cv2.COLOR_BGR2GRAY)))
    rgba = load_avatar_image(_write(tmp_path / "rgba.png", cv2.cvtColor(src, cv2.COLOR_BGR2BGRA)))
    deep = load_avatar_image(_write(tmp_path / "deep.png", src.astype(np.uint16) * 257))
    for img in (grey, rgba, deep):
        assert img.dtype == np.uint8 and img.shape == (*src.shape[:2], 3)
    assert np.abs(deep.astype(int) - src[..., ::-1].astype(int)).max() <= 1
    big = load_avatar_image(_write(tmp_path / "big.jpg", np.full((3000, 2500, 3), 128, np.uint8)))
    assert max(big.shape[:2]) == 2048


def test_latest_slot_keeps_only_newest():
    from reenact_app.gui.worker import LatestSlot

    slot = LatestSlot()
    assert slot.put(1) is True and slot.put(2) is False and slot.put(3) is False
    assert slot.take() == 3 and slot.take() is None and slot.dropped == 2


def test_worker_bridge_reports_errors_and_stops(qtbot):
    from reenact_app.gui.worker import WorkerBridge

    bridge = WorkerBridge()
    messages, done = [], []
    bridge.message.connect(lambda *m: messages.append(m))
    bridge.submit("Exploding", lambda: 1 / 0)
    bridge.submit("Bad file", lambda: (_ for _ in ()).throw(MediaError("no such avatar")))
    bridge.submit("Fine", lambda: 42, on_done=done.append)
    qtbot.waitUntil(lambda: bridge.pending == 0 and len(messages) == 2, timeout=5000)
    assert done == [42]
    assert "ZeroDivisionError" in messages[0][1] and "no such avatar" in messages[1][1]
    assert bridge.stop(5.0) and not bridge.alive
    assert not [t for t in threading.enumerate() if t.name == "reenact-gui-commands"]


def test_ui_thread_runs_posted_work_in_order_and_counts_it(qtbot):
    """What a worker thread posts runs on the UI thread, in order; `pending` says when it all ran (the
    controller's idle() waits for it, so a finished command's results are visible)."""
    from reenact_app.gui.services.ui import UiThread

    ui = UiThread()
    ran: list[tuple[int, str]] = []
    worker = threading.Thread(target=lambda: [ui.post(lambda i=i: ran.append((i, threading.current_thread().name)))
                                              for i in range(3)], name="worker")
    worker.start()
    worker.join()
    assert ui.pending == 3 and ran == []  # queued, not run on the worker
    qtbot.waitUntil(lambda: ui.pending == 0, timeout=2000)
    assert ran == [(i, threading.main_thread().name) for i in range(3)]
    ui.post(lambda: ran.append((3, threading.current_thread().name)))  # on the UI thread: at once
    assert ran[-1] == (3, threading.main_thread().name) and ui.pending == 0


def test_engine_fallback_notice_reaches_the_banner_once(qtbot, tmp_path, monkeypatch):
    """An engine that switched itself at run time (FallbackEngine: CUDA out of memory...) is reported once."""
    from reenact_app.gui.controller import AppController
    from reenact_app.gui.settings import AppSettings

    monkeypatch.setenv("REENACT_CONFIG_DIR", str(tmp_path))
    controller = AppController(AppSettings())
    messages = []
    controller.messageRaised.connect(lambda *m: messages.append(m))
    notice = "TensorRT cuda fp16 failed (RuntimeError: CUDA out of memory); switched to PyTorch cpu fp32"
    controller.engines.notice(notice)  # what FallbackEngine's listener call does, from the pipeline thread
    controller.engines.notice(notice)
    qtbot.waitUntil(lambda: len(messages) >= 1, timeout=2000)
    qtbot.wait(50)
    assert len(messages) == 1 and messages[0][0] == "warning" and "switched to PyTorch" in messages[0][1]
    assert controller.shutdown()


# Every live setting at a value other than its default.
CHANGED = {"relative": False, "adapt_scale": False, "expression": 0.4, "smoothing": 0.2, "crop_margin": 0.3,
           "freeze_crop": True, "mirror": False, "paste_back": False, "full_resolution": False}


def _pipeline_state(pipe) -> dict:
    """What the settings change in a pipeline: motion, expression, smoothing, tracker and output options."""
    from dataclasses import asdict

    return {
        "motion": asdict(pipe.session.settings),
        "expression": asdict(pipe.session.expression.settings),
        "keypoint_smoothing": asdict(pipe.config.keypoint_smoothing),
        "tracker": asdict(pipe.tracker.config),
        "frozen": pipe.tracker._frozen,
        "options": {k: getattr(pipe.config, k) for k in ("mirror", "paste_back", "full_resolution")},
    }


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_settings_applied_live_equal_a_fresh_start(name, clips_dir):
    """One setting changed on a running pipeline leaves it as a pipeline started with that setting."""
    from reenact_app.capture import VideoFileSource
    from reenact_app.gui.live import LIVE_SETTINGS, apply_settings, pipeline_config
    from reenact_app.pipeline import LivePipeline
    from tests.test_pipeline import CLIP, StubEngine

    assert set(CHANGED) == LIVE_SETTINGS
    default, changed = AppSettings(), AppSettings(**{name: CHANGED[name]})
    assert getattr(default, name) != getattr(changed, name)

    def started(settings: AppSettings) -> LivePipeline:
        pipe = LivePipeline(VideoFileSource(clips_dir / CLIP), StubEngine(), config=pipeline_config(settings))
        apply_settings(pipe, settings, {"freeze_crop"})  # as the controller starts one
        return pipe

    live, fresh, untouched = started(default), started(changed), started(default)
    try:
        before = _pipeline_state(live)
        apply_settings(live, changed, {name})
        assert _pipeline_state(live) == _pipeline_state(fresh) != before
        apply_settings(untouched, changed, set(CHANGED) - {name})  # other fields: this one stays
        assert _pipeline_state(untouched) == before
        apply_settings(untouched, changed)  # None: all of them
        assert _pipeline_state(untouched) == _pipeline_state(fresh)
    finally:
        for pipe in (live, fresh, untouched):
            pipe.stop()
