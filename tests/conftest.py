"""Shared fixtures: the ../shared data folder, real frames from shared clips, deterministic torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

try:  # CI runs the property tests on a fixed sequence of examples so a red run is reproducible
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI"):
        _hypothesis_settings.load_profile("ci")
except ImportError:  # pragma: no cover
    pass

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("REENACT_SHARED", REPO.parent / "shared"))


def _require_shared() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.fail(
            f"shared data not found at {SHARED}: the tests need the project's ../shared folder "
            "(or set REENACT_SHARED to its path)",
            pytrace=False,
        )
    return SHARED


def bgr_frames(path, n=10) -> list:
    """The first n frames of a real video, BGR as OpenCV reads them (shared by capture/pipeline tests)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    out = []
    while len(out) < n:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return out


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require_shared()


@pytest.fixture(scope="session")
def reference_dir(shared_dir: Path) -> Path:
    return shared_dir / "reference" / "fomm"


@pytest.fixture(scope="session")
def clips_dir(shared_dir: Path) -> Path:
    return shared_dir / "data" / "clips"


@pytest.fixture(autouse=True)
def _torch_threads():
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    yield
