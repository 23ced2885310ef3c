"""int8 static quantisation (ONNX Runtime) of the animate graph.

Only animate is quantised: the int8 keypoint detector was slower than fp32 for every preset on this
CPU (the QDQ overhead of its many small convolutions outweighs the int8 gain; docs/performance.md), and
keypoint error would move every pixel. Only convolutions are quantised (QDQ format, per-channel int8 weights, uint8 activations calibrated by
min/max on real frames): grid_sample, softmax and the keypoint arithmetic stay fp32, because keypoint
coordinates and the sampling grid are where int8 error would move pixels. The source encoder runs once
per avatar, so it stays fp32. Whether the result is good enough is a parity number, reported in
docs/performance.md, not a promise.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from export.onnx_export import MANIFEST, ExportError, avatar_feed, kp_names, read_manifest

INT8_PARITY_FILE = "int8_parity.json"  # export/int8_gate.py's measurement of the int8 graph

log = logging.getLogger(__name__)


def _image(frame: np.ndarray) -> np.ndarray:
    return frame.transpose(2, 0, 1)[None].astype(np.float32) / 255.0


def calibration_feeds(
    folder: Path, frames: list[np.ndarray], jacobian: bool, avatars: list[np.ndarray] | None = None
) -> dict[str, list[dict]]:
    """Inputs of the kp detector and animate graphs for every frame, driving each avatar (default: the
    first frame). Animate's activation ranges depend on the avatar's features: calibrating with the
    driving person as the only avatar under-covers other identities."""
    import onnxruntime as ort

    manifest = read_manifest(folder)
    run = {
        part: ort.InferenceSession(str(manifest.path(part)), providers=["CPUExecutionProvider"])
        for part in ("kp_detector", "source_encoder")
    }
    states = [avatar_feed(run, _image(a), jacobian, manifest.uses_source_image)[1] for a in avatars or frames[:1]]
    feeds: dict[str, list[dict]] = {"kp_detector": [], "animate": []}
    for frame in frames:
        image = _image(frame)
        feeds["kp_detector"].append({"image": image})
        kp = dict(zip(kp_names(jacobian, "kp_driving"), run["kp_detector"].run(None, {"image": image})))
        feeds["animate"].extend({**state, **kp} for state in states)
    return feeds


class _Reader:
    """onnxruntime.quantization CalibrationDataReader over a list of feeds."""

    def __init__(self, feeds: list[dict]):
        self._iter = iter(feeds)

    def get_next(self):
        return next(self._iter, None)

    def rewind(self):  # pragma: no cover - newer ORT versions call it
        pass


QUANTIZED_PARTS = ("animate",)


def quantize_export(folder: str | Path, frames: list[np.ndarray] | None = None) -> dict[str, str]:
    """Add animate_int8.onnx to an export folder and its manifest.

    frames: uint8 RGB crops at model size (the first is used as the avatar). Without frames, frames of the
    bundled driving clip are used (synthetic images only if it is missing, which calibrates worse).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    folder = Path(folder)
    manifest = read_manifest(folder)
    calibration = f"{len(frames)} given frames" if frames else ""
    avatars = None
    if not frames:
        from export.frames import bundled_driving_clip, sample_frames
        from export.int8_gate import CALIBRATION_PORTRAIT, bundled_portrait

        clip = bundled_driving_clip()
        frames = sample_frames(clip, 8, manifest.image_size, offset=1)
        # The clip's person and a bundled portrait as avatars (the gate checks with the other portrait).
        avatars = [frames[0], bundled_portrait(manifest.image_size, CALIBRATION_PORTRAIT)]
        calibration = (f"{len(frames)} frames of {clip.name} driving its first frame and a bundled portrait"
                       if clip else "synthetic images")
    feeds = calibration_feeds(folder, frames, manifest.jacobian, avatars)
    added = {}
    for part in QUANTIZED_PARTS:
        source = manifest.path(part)
        prepared = folder / f"{part}_prep.onnx"
        target = folder / f"{part}_int8.onnx"
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared), str(target), _Reader(feeds[part]),
                quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                per_channel=True, calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=["Conv"],
            )
        except Exception as exc:
            raise ExportError(f"int8 quantisation of {part} failed: {exc}") from exc
        finally:
            prepared.unlink(missing_ok=True)
        added[f"{part}_int8"] = target.name
        log.info("wrote %s (calibrated on %d frames)", target, len(frames))
    manifest.files.update(added)
    (folder / INT8_PARITY_FILE).unlink(missing_ok=True)  # measured on the graph this replaces
    data = json.loads((folder / MANIFEST).read_text())
    data["files"] = manifest.files
    data["int8_calibration"] = calibration
    (folder / MANIFEST).write_text(json.dumps(data, indent=2))
    return added
