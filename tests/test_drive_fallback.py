"""Offline driving without mediapipe (a bare GPU machine, a broken install): centre crops, not a crash."""

from __future__ import annotations

import logging
import sys

import numpy as np

from reenact_app.drive import make_croppers


def test_missing_mediapipe_gives_centre_crops(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # `import mediapipe` now raises ImportError
    with caplog.at_level(logging.WARNING, logger="reenact_app.drive"):
        croppers = make_croppers(True, 64)
    assert croppers.kind == "centre" and "face tracker unavailable" in caplog.text
    frame = np.arange(100 * 120 * 3, dtype=np.uint8).reshape(100, 120, 3)
    assert croppers.frame(frame, 0.0).crop.shape == (64, 64, 3)
