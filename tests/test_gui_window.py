"""The real main window, offscreen, driven like a user would: real engine (random weights), a shared GRID
clip as the webcam, the fake virtual camera backend, the real one (missing driver), recording, avatars
by number keys, bad files, settings across a restart, clean shutdown. The UI thread's longest stall is
measured over the whole run and reported.

One window serves the tests of this module in order (starting the engine, mediapipe and the video
again for every test would cost minutes on the 2-core CI machine).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QEventLoop, Qt, QTimer
from PySide6.QtTest import QTest

pytestmark = pytest.mark.gui
REPO = Path(__file__).resolve().parent.parent
STALL_TARGET_MS = 50.0
# Hard failures: a real freeze (max) or blocking work on every frame (p99). The 50 ms target for the
# longest stall is reported, not asserted: on the shared 2-core CI machine the OS alone sometimes
# keeps the UI thread off the CPU for 100-200 ms.
STALL_LIMIT_MS = 500.0
P99_GAP_LIMIT_MS = 50.0


def report_line(request, line: str) -> None:
    """Writes a line to the terminal even under pytest's output capture (the stall is a reported number)."""
    capman = request.config.pluginmanager.getplugin("capturemanager")
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if capman is None or reporter is None:
        print(line)
        return
    with capman.global_and_fixture_disabled():
        reporter.write_line(line)


def wait_until(app, predicate, timeout: float = 30.0, what: str = "condition") -> None:
    """Processes Qt events until `predicate()` holds (module-scoped fixtures can't use qtbot)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        spin(10)


def spin(ms: int) -> None:
    """Runs a real Qt event loop for `ms`, as app.exec() does: it releases the GIL while idle.
    (QTest.qWait does not: it sleeps holding the GIL, which starves the pipeline thread 20x.)"""
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def frames_after(app, controller, n: int, timeout: float = 30.0) -> None:
    target = controller.state.frames_shown + n
    wait_until(app, lambda: controller.state.frames_shown >= target, timeout, f"{n} more frames")


def idle(app, controller, timeout: float = 30.0) -> None:
    wait_until(app, controller.idle, timeout, "the command thread to finish")
    app.processEvents()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Private config dir and a random-weights checkpoint (the bundled weights may not exist yet)."""
    import models

    root = tmp_path_factory.mktemp("gui")
    ckpt = models.save_checkpoint(models.build_model("paper-rt"), root / "random weights.safetensors")
    saved = {k: os.environ.get(k) for k in ("REENACT_CONFIG_DIR", "REENACT_CACHE")}
    os.environ["REENACT_CONFIG_DIR"] = str(root / "config")
    os.environ["REENACT_CACHE"] = str(root / "cache")  # no engine exports into the user's cache
    yield {"root": root, "ckpt": ckpt}
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def running(qapp, env, clips_dir, request):
    """The main window running a shared GRID clip through the real engine; reports the UI stall at the end."""
    from reenact_app.gui.app import remove_cv2_qt_overrides
    from reenact_app.gui.controller import AppController
    from reenact_app.gui.main_window import MainWindow
    from reenact_app.gui.run import preload_heavy_modules
    from reenact_app.gui.settings import AppSettings
    from reenact_app.gui.stall import StallMeter
    from reenact_app.sinks.virtual_camera import FAKE_BACKEND, FakeVirtualCameraBackend
    from reenact_common.video_io import read_frames

    remove_cv2_qt_overrides()
    preload_heavy_modules()
    FakeVirtualCameraBackend.reset()
    clip = clips_dir / "rizkiarm+LipNet" / "evaluation" / "samples" / "GRID" / "lbax4n.mpg"
    settings = AppSettings(model_path=str(env["ckpt"]), engine="torch", record_dir=str(env["root"]))
    controller = AppController(settings, driving=str(clip), vcam_backend=FAKE_BACKEND)
    window = MainWindow(controller)
    busy: list[str] = []
    messages: list[tuple] = []
    controller.busyChanged.connect(busy.append)
    controller.messageRaised.connect(lambda *m: messages.append(m))
    window.resize(1200, 760)
    window.show()
    window.activateWindow()
    controller.start()
    wait_until(qapp, window.isActiveWindow, 10, "an active window (its shortcuts need one)")
    wait_until(qapp, lambda: controller.state.frames_shown >= 3, 90, "the first frames")
    rgb = read_frames(clips_dir / "rizkiarm+LipNet" / "evaluation" / "samples" / "GRID" / "sbia1a.mpg", max_frames=30)
    camera_frames = [np.ascontiguousarray(f[..., ::-1]) for f in rgb]  # BGR, as a webcam driver delivers
    meter = StallMeter(5)
    meter.start()
    ctx = {"camera_frames": camera_frames, "app": qapp, "c": controller, "w": window, "busy": busy, "messages": messages, "meter": meter, "env": env,
           "phases": []}
    yield ctx
    window.close()
    report = ctx.get("stall") or meter.stop()
    report_line(request, f"\n[gui] whole window test run, start to close: {report.line()} (target < {STALL_TARGET_MS:.0f} ms)")
    worst = sorted(meter.long_gaps, key=lambda g: -g[1])[:5]
    if worst:
        report_line(request, "[gui] longest gaps (test: ms): " + ", ".join(
            f"{_phase_at(ctx['phases'], t)}: {gap:.0f}" for t, gap in worst))


def _phase_at(phases: list[tuple[float, str]], t: float) -> str:
    name = "start"
    for start, test in phases:
        if start <= t:
            name = test
    return name


@pytest.fixture(autouse=True)
def _phase(request):
    """Remembers when each test started, to attribute UI stalls to what the test was doing."""
    if "running" in request.fixturenames:
        ctx = request.getfixturevalue("running")
        meter = ctx["meter"]
        ctx["phases"].append((time.perf_counter() - meter._start, request.node.name.replace("test_", "")))
        if os.environ.get("GUI_DEBUG"):
            st = ctx["c"].state
            print("PHASE", request.node.name, f"{st.fps:.1f} fps", {k: round(v) for k, v in st.stage_ms.items()}, file=sys.__stderr__)
    yield


def test_starts_with_progress_and_real_frames(running):
    c, w = running["c"], running["w"]
    assert {"Loading model", "Preparing avatar", "Opening driving video"} <= set(running["busy"])
    assert "" in running["busy"]  # busy indicator cleared again
    assert c.state.engine_label.startswith("PyTorch") and c.state.running
    frames_after(running["app"], c, 5)
    image = w.preview.main.image
    assert image is not None and not image.isNull()
    assert w.preview.pip.image is not None  # the driving clip in the picture-in-picture
    assert c.state.face_found is True and c.state.fps > 0 and c.state.latency_ms > 0
    texts = w.status.texts()
    assert "PyTorch" in texts["engine"] and "fps" in texts["fps"] and texts["face"] == "face ✓"


def test_calibrate_with_key_c(running):
    app, c, w = running["app"], running["c"], running["w"]
    session = c.pipeline.session
    QTest.keyClick(w, Qt.Key.Key_C)
    wait_until(app, lambda: session._calibrate_next or session.reference is not None, 5, "calibration request")
    frames_after(app, c, 2)
    assert not session._calibrate_next and session.reference is not None
    assert any("Calibrated" in m[1] for m in running["messages"])


def test_toggle_options_reach_the_pipeline(running):
    app, c, w = running["app"], running["c"], running["w"]
    p = c.pipeline
    ctl = w.controls
    ctl._widgets["mirror"].click()  # the checkbox, as a user would
    ctl._widgets["full_resolution"].click()
    QTest.keyClick(w, Qt.Key.Key_P)  # paste-back off: the output becomes the model-size crop
    QTest.keyClick(w, Qt.Key.Key_F)  # freeze crop
    QTest.keyClick(w, Qt.Key.Key_K)  # keypoints overlay
    ctl.absolute_radio.click()
    ctl.smoothing_slider.setValue(80)
    ctl.margin_spin.setValue(0.5)
    frames_after(app, c, 3)
    s = c.settings
    assert (s.mirror, s.paste_back, s.freeze_crop, s.show_keypoints, s.relative) == (False, False, True, True, False)
    assert (p.config.mirror, p.config.paste_back, p.tracker.frozen, p.session.settings.relative) == (False, False, True, False)
    assert not s.full_resolution and not p.config.full_resolution
    assert p.tracker.config.margin == 0.5 and abs(p.config.keypoint_smoothing.min_cutoff - 1.5 * 0.5 / 0.8) < 1e-6
    assert w.preview.pip.show_keypoints
    size = p.engine.image_size
    wait_until(app, lambda: w.preview.main.image.width() == size, 10, "crop-only output")
    # and back
    for key in (Qt.Key.Key_P, Qt.Key.Key_F, Qt.Key.Key_K, Qt.Key.Key_A):
        QTest.keyClick(w, key)
    ctl._widgets["mirror"].click()
    ctl._widgets["full_resolution"].click()
    frames_after(app, c, 3)
    assert (p.config.mirror, p.config.paste_back, p.tracker.frozen, p.session.settings.relative) == (True, True, False, True)
    assert p.config.full_resolution and w.controls._widgets["full_resolution"].isChecked()
    assert w.controls._widgets["paste_back"].isChecked()
    wait_until(app, lambda: w.preview.main.image.width() != size, 10, "pasted-back output")


def test_expression_strength_slider_and_keys_reach_the_session(running):
    app, c, w = running["app"], running["c"], running["w"]
    p = c.pipeline
    w.controls.expression_slider.setValue(50)
    frames_after(app, c, 2)
    assert c.settings.expression == 0.5 and p.session.expression.settings.strength == 0.5
    QTest.keyClick(w, Qt.Key.Key_BracketRight)
    QTest.keyClick(w, Qt.Key.Key_BracketRight)
    frames_after(app, c, 2)
    assert c.settings.expression == 1.0 and p.session.expression.settings.strength == 1.0
    assert w.controls.expression_slider.value() == 100
    for _ in range(6):
        QTest.keyClick(w, Qt.Key.Key_BracketLeft)
    frames_after(app, c, 2)
    assert c.settings.expression == 0.0 and not p.session.expression.settings.active
    QTest.keyClick(w, Qt.Key.Key_BracketRight)
    QTest.keyClick(w, Qt.Key.Key_BracketRight)
    QTest.keyClick(w, Qt.Key.Key_BracketRight)
    QTest.keyClick(w, Qt.Key.Key_BracketRight)
    frames_after(app, c, 2)
    assert p.session.expression.settings.strength == 1.0


def test_virtual_camera_fake_backend(running):
    from reenact_app.sinks.virtual_camera import FakeVirtualCameraBackend

    app, c, w = running["app"], running["c"], running["w"]
    QTest.keyClick(w, Qt.Key.Key_V)
    idle(app, c)
    assert c.state.vcam_on and w.controls.vcam_button.isChecked()
    assert "vcam: on" in w.status.texts()["vcam"]
    fake = FakeVirtualCameraBackend.instances[-1]
    wait_until(app, lambda: fake.count >= 3, 20, "frames at the virtual camera")
    assert fake.frames[-1].shape == (480, 640, 3) and fake.frames[-1].std() > 1
    w.controls.vcam_button.click()  # stop
    idle(app, c)
    assert fake.closed and not c.state.vcam_on and not w.controls.vcam_button.isChecked()


def test_virtual_camera_vanishing_mid_stream_is_reported(running):
    from reenact_app.sinks.virtual_camera import FakeVirtualCameraBackend

    app, c, w = running["app"], running["c"], running["w"]
    FakeVirtualCameraBackend.fail_after = 3
    try:
        c.start_virtual_camera()
        idle(app, c)
    finally:
        FakeVirtualCameraBackend.fail_after = None
    wait_until(app, lambda: not c.state.vcam_on, 20, "the failure to reach the UI")
    assert c.state.vcam == "stopped (error)" and not w.controls.vcam_button.isChecked()
    wait_until(app, lambda: "stopped accepting frames" in w.banner.text, 10, "the banner")
    frames_after(app, c, 3)  # the preview goes on
    w.banner.dismiss()


def test_virtual_camera_real_backend_reports_missing_driver(running):
    app, c, w = running["app"], running["c"], running["w"]
    c.outputs.vcam_backend = None  # the real platform backend (no v4l2loopback on this machine)
    try:
        c.start_virtual_camera()
        idle(app, c)
    finally:
        c.outputs.vcam_backend = "reenact-fake"
    assert not c.state.vcam_on and c.state.vcam == "unavailable"
    assert w.banner.isVisible() and w.banner.level == "error"
    assert "v4l2loopback" in w.banner.text
    assert "sudo modprobe v4l2loopback" in w.banner.fix
    frames_after(app, c, 3)  # the preview keeps running
    w.banner.dismiss()


def test_record_short_mp4_that_decodes(running):
    app, c, w = running["app"], running["c"], running["w"]
    QTest.keyClick(w, Qt.Key.Key_R)
    idle(app, c)
    assert c.state.recording and "REC" in w.status.texts()["rec"]
    path = Path(c.state.recording_path)
    assert path.parent == running["env"]["root"]
    frames_after(app, c, 8)
    QTest.keyClick(w, Qt.Key.Key_R)
    idle(app, c)
    assert not c.state.recording and c.state.last_recording == str(path)
    frames = []
    with running["meter"].paused():  # decoding the result here is test work, not an app stall
        cap = cv2.VideoCapture(str(path))
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
        cap.release()
    assert len(frames) >= 5 and frames[0].shape == (480, 640, 3)
    assert any("Recording saved" in m[1] for m in running["messages"])


def test_switch_avatars_with_number_keys(running):
    app, c, w = running["app"], running["c"], running["w"]
    assert [Path(p).name for p in c.avatars[:2]] == ["gogol.jpg", "monalisa.jpg"]
    for key, index in ((Qt.Key.Key_2, 1), (Qt.Key.Key_1, 0)):
        QTest.keyClick(w, key)
        idle(app, c)
        assert c.state.avatar_index == index and c.settings.avatar == c.avatars[index]
        assert w.gallery.list.currentRow() == index
        frames_after(app, c, 2)
    QTest.keyClick(w, Qt.Key.Key_9)  # no 9th avatar: nothing happens
    idle(app, c)
    assert c.state.avatar_index == 0
    # hammering the keys: the last one wins and at most two loads run (one started, one queued)
    loads = c.avatar_service.loads
    for key in (Qt.Key.Key_2, Qt.Key.Key_1) * 10 + (Qt.Key.Key_2,):
        QTest.keyClick(w, key)
    idle(app, c)
    assert c.state.avatar_index == 1 and c.avatar_service.loads - loads <= 2
    frames_after(app, c, 2)
    QTest.keyClick(w, Qt.Key.Key_1)
    idle(app, c)
    assert c.state.avatar_index == 0


def test_bad_avatar_files_give_messages_not_crashes(running, tmp_path):
    app, c, w = running["app"], running["c"], running["w"]
    bad = tmp_path / "not an image.jpg"
    noface = tmp_path / "landscape.png"
    with running["meter"].paused():  # writing the test files is test work, not an app stall
        bad.write_bytes(os.urandom(4096))
        noise = np.random.default_rng(1).integers(0, 255, (300, 400, 3), np.uint8)
        cv2.imwrite(str(noface), cv2.GaussianBlur(noise, (31, 31), 0))
    before = list(c.avatars)
    c.add_avatars([str(bad)])
    idle(app, c)
    assert c.avatars == before and c.state.avatar_index == 0
    assert w.banner.level == "error" and "not an image.jpg" in w.banner.text
    # a readable picture without a face: a warning with the centre-crop offer, avatar unchanged until accepted
    c.add_avatars([str(noface)])
    idle(app, c)
    assert len(c.avatars) == len(before) + 1 and c.state.avatar_index == 0
    assert w.banner.level == "warning" and "No face" in w.banner.text and w.banner.action.isVisible()
    w.banner.action.click()  # "Use centre crop"
    idle(app, c)
    assert Path(c.state.avatar_path).name == "landscape.png"
    frames_after(app, c, 2)
    assert c.state.running


def test_switch_to_a_camera_that_unplugs_while_the_virtual_camera_streams(running, clips_dir):
    """Source switching keeps the pipeline and its sinks: the virtual camera never closes. A camera
    unplugged mid-stream shows up as 'reconnecting' in the status bar and comes back by itself."""
    from reenact_app.capture import CameraInfo, FakeVideoCapture
    from reenact_app.sinks.virtual_camera import FakeVirtualCameraBackend

    app, c, w = running["app"], running["c"], running["w"]
    frames = running["camera_frames"]  # decoded before the stall meter started (test code, not the app)
    state: dict = {}
    c.sources.camera_factory = FakeVideoCapture.factory(frames, available=lambda n: n not in (1, 2),  # back on the 3rd try
                                                        scripts=lambda n: ["ok"] * 25 + ["unplug"] if n == 0 else (),
                                                        fps=25, delay=1 / 25, state=state)
    c.sources.cameras = [CameraInfo(0, "Fake USB camera")]  # as if plugged in (the UI thread owns the list)
    c.stateChanged.emit()
    c.start_virtual_camera()
    idle(app, c)
    fake = FakeVirtualCameraBackend.instances[-1]
    combo = w.controls.source_combo
    combo.setCurrentIndex(combo.findData("camera:0"))  # as a user picks it
    idle(app, c)
    assert c.state.source_kind == "camera" and c.settings.source == "camera"
    wait_until(app, lambda: "Fake USB camera: reconnecting" in w.status.texts()["source"], 20, "the unplug to show")
    wait_until(app, lambda: state["opens"] >= 3 and w.status.texts()["source"] == "Fake USB camera", 20, "the camera to come back")
    sent = fake.count
    frames_after(app, c, 3)
    assert fake.count > sent and not fake.closed and FakeVirtualCameraBackend.instances[-1] is fake
    clip = clips_dir / "rizkiarm+LipNet" / "evaluation" / "samples" / "GRID" / "lbax4n.mpg"
    c.set_video(str(clip))
    idle(app, c)
    assert c.state.source_kind == "video" and c.state.source_label == "lbax4n.mpg"
    frames_after(app, c, 3)
    c.stop_virtual_camera()
    idle(app, c)
    assert fake.closed


def test_broken_checkpoint_keeps_the_running_model(running, tmp_path):
    app, c, w = running["app"], running["c"], running["w"]
    engine, model_path = c.engine, c.settings.model_path
    broken = tmp_path / "broken.safetensors"
    with running["meter"].paused():
        broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}" + os.urandom(256))
    c.set_model(str(broken))
    idle(app, c)
    assert w.banner.level == "error" and "Loading model failed" in w.banner.text
    assert c.engine is engine and c.settings.model_path == model_path
    assert c.state.model_label == Path(model_path).name
    frames_after(app, c, 3)
    w.banner.dismiss()


def test_avatar_detail_setting_rebuilds_the_engine(running, tmp_path):
    """Weights with the warped-source blend: the "Avatar detail" checkbox switches it off and on again."""
    from models import convert_checkpoint

    app, c, w = running["app"], running["c"], running["w"]
    model_path = c.settings.model_path
    with running["meter"].paused():
        detailed = convert_checkpoint(model_path, tmp_path / "detailed.safetensors", warped_source_blend=True)
    c.set_model(str(detailed))
    idle(app, c)
    assert c.engine.model.generator.warped_source_blend
    w.controls._widgets["avatar_detail"].click()  # the checkbox, as a user would
    idle(app, c)
    assert not c.settings.avatar_detail and not c.engine.model.generator.warped_source_blend
    frames_after(app, c, 3)
    w.controls._widgets["avatar_detail"].click()
    idle(app, c)
    assert c.settings.avatar_detail and c.engine.model.generator.warped_source_blend
    c.set_model(model_path)
    idle(app, c)
    frames_after(app, c, 3)


def test_full_screen_preview(running):
    app, c, w = running["app"], running["c"], running["w"]
    QTest.keyClick(w, Qt.Key.Key_F11)
    wait_until(app, w.isFullScreen, 5, "full screen")
    assert not w.side.isVisible() and not w.statusBar().isVisible()
    QTest.keyClick(w, Qt.Key.Key_Escape)
    wait_until(app, lambda: not w.isFullScreen(), 5, "normal window")
    assert w.side.isVisible() and w.statusBar().isVisible()


def test_stall_while_running_is_small(running, request):
    """Steady state: 2 s of plain running (no user actions), then the whole run so far."""
    from reenact_app.gui.stall import StallMeter

    app, c = running["app"], running["c"]
    steady = StallMeter(5)
    steady.start()
    frames_after(app, c, 10)
    end = time.monotonic() + 2.0
    while time.monotonic() < end:
        spin(20)
    steady_report = steady.stop()
    report = running["meter"].report()
    report_line(request, f"\n[gui] pipeline {c.state.fps:.1f} fps, latency {c.state.latency_ms:.0f} ms; "
                         f"steady running: {steady_report.line()}; including user actions: "
                         f"{report.line()} (target < {STALL_TARGET_MS:.0f} ms)")
    assert report.ticks > 100
    assert report.max_stall_ms < STALL_LIMIT_MS, report.line()
    assert report.p99_gap_ms < P99_GAP_LIMIT_MS, report.line()
    assert steady_report.p99_gap_ms < P99_GAP_LIMIT_MS, steady_report.line()


def test_close_stops_every_thread(running):
    app, c, w = running["app"], running["c"], running["w"]
    pipeline, source = c.pipeline, c.pipeline.source
    c.set_option("output_resolution", "1280x720")
    c.set_option("smoothing", 0.8)
    c.set_option("crop_margin", 0.5)
    running["stall"] = running["meter"].stop()  # closing joins the worker threads on purpose: not a stall
    w.close()
    assert not pipeline.running and not source.running and not c.bridge.alive
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and [t for t in threading.enumerate() if t.name.startswith("reenact-")]:
        time.sleep(0.05)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("reenact-")]
    c.settingsChanged.emit()  # signals after shutdown are harmless
    app.processEvents()


def test_settings_persist_across_restart(running, qtbot):
    from reenact_app.gui.controller import AppController
    from reenact_app.gui.main_window import MainWindow
    from reenact_app.gui.settings import load_settings

    old = running["c"].settings
    stored = load_settings()
    assert stored.output_resolution == "1280x720" and stored.avatar == old.avatar
    assert (stored.model_path, stored.engine, stored.smoothing, stored.crop_margin) == (old.model_path, "torch", 0.8, 0.5)
    assert stored.window_geometry
    controller = AppController()  # loads from REENACT_CONFIG_DIR, as a fresh launch does
    window = MainWindow(controller)
    qtbot.addWidget(window)
    assert controller.settings == stored
    assert window.controls._widgets["output_resolution"].currentData() == "1280x720"
    assert window.controls.smoothing_slider.value() == 80
    controller.reset_settings()
    assert load_settings().output_resolution == "640x480"
    assert window.controls._widgets["output_resolution"].currentData() == "640x480"
    assert controller.shutdown()
