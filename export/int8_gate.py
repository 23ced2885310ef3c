"""The parity gate of the int8 animate graph: used only where its error against fp32 is small on real frames.

Why a gate: int8's error depends on the weights (an untrained model's near-constant output hides it; a
trained model's occlusion edges show it), so a fixed yes/no per preset would be wrong for someone's
checkpoint. The gate runs the int8 and fp32 paths on held-out frames of the bundled driving clip (not the
calibration frames: those flatter int8) driving a bundled portrait (another identity, as in the app),
measures the prediction's mean and max |difference| in grey levels, and stores the measurement beside the
export (int8_parity.json), so it runs once per model. Callers compare it with their limits (`Int8Gate`)
and use fp32 when it fails.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from export.onnx_export import read_manifest
from export.quantize import INT8_PARITY_FILE
from models import ReenactModel

log = logging.getLogger(__name__)

RESULT_FILE = INT8_PARITY_FILE
# Held-out frames: calibration samples the clip from frame 1 every 3 frames (8 frames); these start later.
HELD_OUT_OFFSET, HELD_OUT_STEP = 30, 5
# Bundled portraits (assets/avatars, sorted): calibration drives the last, the gate the first.
GATE_PORTRAIT, CALIBRATION_PORTRAIT = 0, -1


@dataclass(frozen=True)
class Int8Gate:
    """Limits on the int8 prediction's difference from fp32, grey levels (0-255), over held-out real frames.

    Defaults: below one grey level on average, no pixel off by more than about a tenth of the range
    (the bundled paper-rt weights' measurement is in docs/performance.md: they pass).
    """

    mean_grey_levels: float = 1.0
    max_grey_levels: float = 24.0
    frames: int = 8


@dataclass(frozen=True)
class Int8Parity:
    mean_grey_levels: float
    max_grey_levels: float
    frames: int

    def passes(self, gate: Int8Gate) -> bool:
        return self.mean_grey_levels <= gate.mean_grey_levels and self.max_grey_levels <= gate.max_grey_levels

    def line(self, gate: Int8Gate) -> str:
        verdict = "passes" if self.passes(gate) else "fails"
        return (f"int8 animate vs fp32 on {self.frames} held-out real frames: mean {self.mean_grey_levels:.2f}, "
                f"max {self.max_grey_levels:.1f} grey levels; {verdict} the gate (mean <= {gate.mean_grey_levels:g}, "
                f"max <= {gate.max_grey_levels:g})")


def measure_int8_parity(model: ReenactModel, folder: str | Path, frames: list[np.ndarray]) -> Int8Parity:
    """Measure (no cache): frames[0] is the avatar, every frame drives it; PyTorch fp32 is the reference."""
    from export.parity import check_parity

    report = check_parity(model, folder, frames, tolerance=float("inf"), int8=True)
    return Int8Parity(mean_grey_levels=255.0 * report.mean_abs_prediction,
                      max_grey_levels=255.0 * report.max_abs_prediction, frames=report.frames)


def bundled_portrait(size: int, which: int = GATE_PORTRAIT) -> np.ndarray:
    """A bundled portrait, centre-cropped to the model size (a synthetic image if the assets are missing)."""
    import cv2

    from export.frames import synthetic_frames
    from reenact_common.paths import assets_dir
    from reenact_common.video_io import centre_crop

    portraits = sorted((assets_dir() / "avatars").glob("*.jpg"))
    image = cv2.imread(str(portraits[which]), cv2.IMREAD_COLOR) if portraits else None
    if image is None:
        return synthetic_frames(1, size)[0]
    return centre_crop(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), size)


def int8_parity(model: ReenactModel, folder: str | Path, gate: Int8Gate | None = None) -> Int8Parity:
    """The export's int8 parity, measured once on held-out real frames and kept in int8_parity.json."""
    from export.frames import sample_frames

    gate = gate or Int8Gate()
    path = Path(folder) / RESULT_FILE
    try:
        cached = json.loads(path.read_text())
        if cached.get("frames") == gate.frames + 1:
            return Int8Parity(**cached)
    except (OSError, ValueError, TypeError):
        pass  # not measured yet (or unreadable): measure
    size = read_manifest(folder).image_size
    driving = sample_frames(None, gate.frames, size, offset=HELD_OUT_OFFSET, step=HELD_OUT_STEP)
    parity = measure_int8_parity(model, folder, [bundled_portrait(size, GATE_PORTRAIT), *driving])
    path.write_text(json.dumps(asdict(parity), indent=2))
    return parity
