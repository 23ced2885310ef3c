"""A `reenact` run shows the lines a user needs: mediapipe/TensorFlow Lite start-up chatter is filtered off
stderr (unless --verbose), native errors and everything else still come through."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "assets" / "driving" / "demo.mp4"
CHATTER = ("Created TensorFlow Lite XNNPACK delegate", "Feedback manager requires a model with a single signature",
           "Using NORM_RECT without IMAGE_DIMENSIONS", "absl::InitializeLog")
NO_FACE = "No face found in the avatar image: using a centre crop"


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def _animate_green_square(tmp_path: Path, *options: str) -> list[str]:
    avatar = np.full((256, 256, 3), 255, np.uint8)
    avatar[64:192, 64:192] = (0, 200, 0)  # a drawing with no face
    cv2.imwrite(str(tmp_path / "green.png"), avatar)
    out = _run(["-m", "reenact_app.cli", *options, "animate", "--avatar", "green.png", "--driving", str(DEMO),
                "--max-frames", "3", "-o", "out.mp4", "--no-progress"], tmp_path)
    return [line for line in out.stderr.splitlines() if line.strip()]


def test_animate_shows_the_no_face_warning_without_native_chatter(tmp_path):
    lines = _animate_green_square(tmp_path)
    assert not [line for line in lines if any(c in line for c in CHATTER)], "\n".join(lines)
    warnings = [i for i, line in enumerate(lines) if " WARNING " in line]
    assert [NO_FACE in lines[i] for i in warnings] == [True], "\n".join(lines)  # the one warning, and that one
    assert warnings[0] < 10, "\n".join(lines)
    # --verbose keeps everything: the chatter is there to filter (mediapipe still prints it)
    verbose = _animate_green_square(tmp_path, "--verbose")
    assert any(c in line for line in verbose for c in CHATTER)
    assert any(NO_FACE in line for line in verbose)


_NATIVE_WRITES = r"""
import os, sys
from reenact_app import native_stderr
native_stderr.install()
os.write(2, b"W0000 00:00:1796547820.020017   32332 inference_feedback_manager.cc:114] Feedback manager requires a model with a single signature inference.\n")
os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
os.write(2, b"E0000 00:00:1796547820.020017   32332 graph.cc:12] a native error\n")
os.write(2, b"Warning: a native line we don't know\n")
print("python's own stderr", file=sys.stderr)
os.write(2, b"no newline at the end")
"""


def test_filter_drops_only_chatter(tmp_path):
    err = _run(["-c", _NATIVE_WRITES], tmp_path).stderr
    assert "Feedback manager" not in err and "XNNPACK" not in err
    for kept in ("a native error", "Warning: a native line we don't know", "python's own stderr",
                 "no newline at the end"):
        assert kept in err, err
