"""Parity of exported graphs against the PyTorch model on real frames.

The check runs the whole per-frame path both ways (avatar = first frame, driving = the others):
PyTorch kp detector + encode_source + animate versus the three ONNX graphs fed with their own
outputs, and reports the max abs difference of the prediction (float, [0, 1]) and of the keypoints.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from export.onnx_export import ExportError, avatar_feed, read_manifest
from models import ReenactModel

log = logging.getLogger(__name__)

FP32_TOLERANCE = 1e-3


@dataclass
class ParityReport:
    frames: int
    max_abs_prediction: float
    mean_abs_prediction: float
    max_abs_keypoints: float
    tolerance: float
    graphs: str  # "fp32" or "int8"
    # max - min of the PyTorch prediction over all frames and pixels: an untrained model's output is
    # nearly constant (~0.5), so an absolute diff alone flatters a lossy graph; diff / range does not.
    prediction_range: float = 1.0

    @property
    def relative_to_range(self) -> float:
        return self.max_abs_prediction / max(self.prediction_range, 1e-12)

    @property
    def ok(self) -> bool:
        return self.max_abs_prediction <= self.tolerance

    def line(self) -> str:
        verdict = "OK" if self.ok else "FAILED"
        return (
            f"parity {self.graphs} on {self.frames} frames: max |diff| prediction {self.max_abs_prediction:.2e} "
            f"(mean {self.mean_abs_prediction:.2e}; {100 * self.relative_to_range:.2f}% of the output's range "
            f"{self.prediction_range:.3g}), keypoints {self.max_abs_keypoints:.2e}; "
            f"tolerance {self.tolerance:.0e}: {verdict}"
        )


def _to_array(frame: np.ndarray) -> np.ndarray:
    return frame.transpose(2, 0, 1)[None].astype(np.float32) / 255.0


def check_parity(
    model: ReenactModel,
    export_dir: str | Path,
    frames: list[np.ndarray],
    tolerance: float = FP32_TOLERANCE,
    int8: bool = False,
) -> ParityReport:
    """frames: uint8 RGB at model size; frames[0] is the avatar, every frame also drives it."""
    import onnxruntime as ort

    if len(frames) < 2:
        raise ExportError("parity needs at least two frames (an avatar and a driving frame)")
    manifest = read_manifest(export_dir)
    files = dict(manifest.files)
    if int8:
        files["animate"] = files["animate_int8"]
    sessions = {
        part: ort.InferenceSession(str(Path(export_dir) / files[part]), providers=["CPUExecutionProvider"])
        for part in ("kp_detector", "source_encoder", "animate")
    }
    names = ["value", "jacobian"] if manifest.jacobian else ["value"]
    model = model.eval().to("cpu", torch.float32)

    avatar = _to_array(frames[0])
    _, avatar_inputs = avatar_feed(sessions, avatar, manifest.jacobian, manifest.uses_source_image)
    with torch.inference_mode():
        avatar_t = torch.from_numpy(avatar)
        kp_source = model.kp_detector(avatar_t)
        state = model.generator.encode_source(avatar_t, kp_source)

    max_pred, sum_pred, max_kp = 0.0, 0.0, 0.0
    low, high = float("inf"), float("-inf")
    for frame in frames:
        image = _to_array(frame)
        kp_ort = sessions["kp_detector"].run(None, {"image": image})
        feed = {**avatar_inputs, **{f"kp_driving_{n}": v for n, v in zip(names, kp_ort)}}
        prediction_ort = sessions["animate"].run(["prediction"], feed)[0]
        with torch.inference_mode():
            kp = model.kp_detector(torch.from_numpy(image))
            prediction = model.generator.animate(state, kp)["prediction"].numpy()
        low, high = min(low, float(prediction.min())), max(high, float(prediction.max()))
        diff = np.abs(prediction_ort - prediction)
        max_pred = max(max_pred, float(diff.max()))
        sum_pred += float(diff.mean())
        for n, v in zip(names, kp_ort):
            max_kp = max(max_kp, float(np.abs(v - kp[n].numpy()).max()))
    report = ParityReport(
        frames=len(frames), max_abs_prediction=max_pred, mean_abs_prediction=sum_pred / len(frames),
        max_abs_keypoints=max_kp, tolerance=tolerance, graphs="int8" if int8 else "fp32",
        prediction_range=high - low,
    )
    log.info(report.line())
    return report
