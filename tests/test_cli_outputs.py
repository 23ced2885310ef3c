"""Unwritable outputs fail at once, before any model loads, with one line on stderr (`reenact` run as a
user runs it: a subprocess), and a writer that breaks mid-run says so in one line too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reenact_common.errors import MediaError

REPO = Path(__file__).resolve().parent.parent
AVATAR = REPO / "assets" / "avatars" / "gogol.jpg"
DEMO = REPO / "assets" / "driving" / "demo.mp4"


def _reenact(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run([sys.executable, "-m", "reenact_app.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def _one_error_line(out: subprocess.CompletedProcess, command: str) -> str:
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 1, out.stderr[-2000:]
    assert len(lines) == 1, out.stderr[-2000:]  # no traceback, no ffmpeg command line, no model-loading logs
    assert lines[0].startswith(f"reenact {command}: error: ")
    return lines[0]


def _unwritable_outputs(tmp_path: Path) -> dict[str, tuple[str, str]]:
    (tmp_path / "a_file.txt").write_text("x")
    return {
        "missing folder": (str(tmp_path / "no" / "such" / "out.mp4"), "does not exist"),
        "a directory": (str(tmp_path), "is a directory"),
        "a file as folder": (str(tmp_path / "a_file.txt" / "out.mp4"), "is a file, not a folder"),
        "name too long": (str(tmp_path / ("n" * 300 + ".mp4")), "file name too long"),
        # /proc takes no new files, even from root (whom permission bits never stop): it used to fail
        # only after the model had loaded, with ffmpeg's whole command line
        "virtual file system": ("/proc/reenact-out.mp4", "can't write /proc/reenact-out.mp4"),
    }


@pytest.mark.parametrize("case", ["missing folder", "a directory", "a file as folder", "name too long",
                                  "virtual file system"])
def test_animate_unwritable_output_fails_first_in_one_line(tmp_path, case):
    if case == "virtual file system" and not Path("/proc/self").exists():
        pytest.skip("no /proc on this platform")
    output, expected = _unwritable_outputs(tmp_path)[case]
    out = _reenact("animate", "--avatar", str(AVATAR), "--driving", str(DEMO), "--max-frames", "2", "-o", output,
                   cwd=tmp_path)
    assert expected in _one_error_line(out, "animate")
    assert not list(tmp_path.glob("*.mp4"))  # the check leaves nothing behind


def test_animate_read_only_folder_fails_first_in_one_line(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permission bits don't apply (the /proc case covers root)")
        out = _reenact("animate", "--avatar", str(AVATAR), "--driving", str(DEMO), "-o", str(ro / "out.mp4"),
                       cwd=tmp_path)
        assert "permission denied" in _one_error_line(out, "animate")
    finally:
        ro.chmod(0o700)


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="no /proc on this platform")
@pytest.mark.parametrize("command", [
    ["live", "--driving", str(DEMO), "--avatar", str(AVATAR), "--frames", "2", "--record", "/proc/reenact-out.mp4"],
    ["live", "--driving", str(DEMO), "--avatar", str(AVATAR), "--frames", "2", "--stats-json", "/proc/x/s.json"],
    ["bench", "--frames", "2", "--no-memory", "--json", "/proc/reenact-bench.json"],
], ids=["live-record", "live-stats-json", "bench-json"])
def test_other_commands_check_their_outputs_first(tmp_path, command):
    line = _one_error_line(_reenact(*command, cwd=tmp_path), command[0])
    assert "can't write /proc/" in line


def test_writer_broken_mid_run_reports_one_line(tmp_path, monkeypatch):
    """ffmpeg itself failing (here: the up-front check bypassed, so it is told to write into /proc) gives
    one line, not ffmpeg's command line and log."""
    if not Path("/proc/self").exists():
        pytest.skip("no /proc on this platform")
    import reenact_common.video_io as video_io

    monkeypatch.setattr(video_io, "check_writable", lambda path, *a, **k: Path(path))
    frame = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(MediaError) as info:
        with video_io.VideoWriter("/proc/reenact-out.mp4", 25.0, (64, 64)) as writer:
            for _ in range(50):
                writer.write(frame)
    message = str(info.value)
    assert "\n" not in message and "FFMPEG COMMAND" not in message and "/proc/reenact-out.mp4" in message
