"""FOMM reconstruction evaluation: each test clip is re-rendered from its own first frame.

Protocol (Siarohin et al., FOMM, sec. 4): for every clip, frame 0 is the source image and *every* frame
(frame 0 included) is the driving frame, with absolute keypoints:
`generator(source, kp_driving=kp_detector(frame), kp_source=kp_detector(source))`. The prediction is
compared with the real frame (L1, AKD, AED, MKR; see `training.metrics`). The static baseline (output =
source frame) is scored with the same code on the same frames, so a model has to *show* that it transfers
motion: a model that ignores the driving frame scores exactly the baseline.

Works on a checkpoint path or an in-memory model (anything with `.kp_detector` and `.generator`), so the
trainer can call it for validation; the model's train/eval modes are restored afterwards.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reenact_common.errors import MediaError, ReenactError
from reenact_common.video_io import IMAGE_SUFFIXES
from training.metrics import FaceObservation, FrameScore, MetricSet, compare, load_face_models, observe_generated, to_uint8

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".mpg", ".mpeg", ".webm", ".gif")
METRIC_MODELS = {
    "detector": "dlib HOG frontal face detector (real frame; generated frame for MKR)",
    "landmarks": "dlib shape_predictor_68_face_landmarks (iBUG 68 points), not the mediapipe training teacher",
    "embedding": "dlib_face_recognition_resnet_model_v1 (128-d)",
}


class EvaluationDataError(ReenactError):
    """The evaluation data folder is missing, empty or unreadable."""


@dataclass(frozen=True)
class ClipSource:
    """One test clip: a folder of frame images or a video file."""

    clip_id: str
    path: Path

    def read_frames(self, size: int, max_frames: int | None = None, spread: bool = False) -> list[np.ndarray]:
        """RGB float32 HWC frames in [0,1], resized to size x size.

        max_frames takes the first N frames, or with spread=True N frames evenly spaced over the clip (frame 0
        first, as the protocol's source), which samples the whole clip as the all-frames protocol does; the
        first N frames only see its opening seconds.
        """
        if self.path.is_dir():
            raw = _read_folder(self.path, None if spread else max_frames)
        else:
            raw = _read_video(self.path, None if spread else max_frames)
        if spread and max_frames is not None:
            raw = [raw[i] for i in spread_indices(len(raw), max_frames)]
        return [_prepare(frame, size) for frame in raw]


def spread_indices(total: int, count: int) -> list[int]:
    """`count` frame indices evenly spaced over 0..total-1, 0 first (fewer when the clip is shorter)."""
    if total <= 0:
        return []
    count = min(count, total)
    return sorted({round(i * (total - 1) / max(1, count - 1)) for i in range(count)})


@dataclass
class ReferenceCache:
    """What does not depend on the model, kept across evaluations of the same clips (the trainer's periodic
    evaluation): dlib's observation of every real frame and the static baseline's scores. Halves the cost of
    each evaluation after the first."""

    entries: dict[tuple, tuple[list[FaceObservation], list[FrameScore]]] = field(default_factory=dict)


@dataclass
class ClipResult:
    clip_id: str
    path: str
    model: MetricSet
    baseline: MetricSet

    def to_dict(self) -> dict[str, Any]:
        return {
            "clip": self.clip_id,
            "path": self.path,
            "frames": self.model.frames,
            "model": self.model.to_dict(),
            "static_baseline": self.baseline.to_dict(),
        }


@dataclass
class EvaluationReport:
    checkpoint: str
    data_dir: str
    split: str
    image_size: int
    clips: list[ClipResult]
    model: MetricSet
    baseline: MetricSet
    model_seconds: float
    metric_seconds: float
    skipped: list[str] = field(default_factory=list)
    max_frames: int | None = None
    spread: bool = False

    def clip_standard_error(self) -> dict[str, float]:
        """Standard error of the model's per-clip means (std / sqrt(clips)): how much a score could move with
        another draw of clips, i.e. whether two checkpoints' difference is more than the choice of data."""
        out = {}
        for metric in ("l1", "akd", "aed"):
            values = np.array([getattr(c.model, metric) for c in self.clips], dtype=np.float64)
            values = values[np.isfinite(values)]
            out[metric] = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
        return out

    def to_dict(self) -> dict[str, Any]:
        frames = self.model.frames
        return {
            "protocol": "fomm-reconstruction",
            "description": "source = first frame of each clip; every frame driven with absolute keypoints; "
            "overall = mean over all frames; static_baseline = source frame as output",
            "checkpoint": self.checkpoint,
            "data": self.data_dir,
            "split": self.split,
            "image_size": self.image_size,
            "frames_per_clip": {"max": self.max_frames, "sampling": "spread" if self.spread else "first"},
            "units": {"l1": "mean |error| in [0,1]", "akd": "pixels at 256x256", "aed": "L2 in embedding space",
                      "mkr": "fraction of real frames with a detected face whose generated frame has none"},
            "metric_models": METRIC_MODELS,
            "overall": {"model": self.model.to_dict(), "static_baseline": self.baseline.to_dict(),
                        "model_clip_standard_error": self.clip_standard_error()},
            "clips": [clip.to_dict() for clip in self.clips],
            "skipped_clips": self.skipped,
            "timing": {
                "frames": frames,
                "model_seconds_per_frame": self.model_seconds / max(frames, 1),
                "metrics_seconds_per_frame": self.metric_seconds / max(frames, 1),
                "total_seconds": self.model_seconds + self.metric_seconds,
            },
        }


def find_clips(data_dir: str | Path, split: str = "test") -> list[ClipSource]:
    """Clips of DIR/<split>: sub-folders of frame images, or video files (VoxCeleb/TaiChi layouts)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise EvaluationDataError(
            f"data folder not found: {root}. Prepare one with `reenact prepare-data VIDEOS... -o {root}`"
        )
    split_dir = root / split
    if not split_dir.is_dir():
        raise EvaluationDataError(
            f"{root} has no '{split}/' folder. Expected {root}/{split}/<clip>/00000.png... or "
            f"{root}/{split}/<clip>.mp4 (the layout `reenact prepare-data` writes)"
        )
    clips = []
    for entry in sorted(split_dir.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in entry.iterdir()):
            clips.append(ClipSource(entry.name, entry))
        elif entry.is_file() and entry.suffix.lower() in VIDEO_SUFFIXES:
            clips.append(ClipSource(entry.stem, entry))
    if not clips:
        raise EvaluationDataError(
            f"no clips in {split_dir}: expected sub-folders of PNG/JPG frames or video files "
            f"({', '.join(VIDEO_SUFFIXES)})"
        )
    return clips


def select_clips(clips: list[ClipSource], count: int | None) -> list[ClipSource]:
    """`count` clips spread evenly over the sorted list (more identities than the first N would give)."""
    if count is None or count >= len(clips):
        return clips
    if count < 1:
        raise EvaluationDataError(f"--clips must be at least 1, got {count}")
    picks = sorted({int(round(i)) for i in np.linspace(0, len(clips) - 1, count)})
    return [clips[i] for i in picks]


def evaluate(
    checkpoint_or_model: Any,
    data_dir: str | Path,
    *,
    config: Any = None,
    split: str = "test",
    max_frames: int | None = None,
    max_clips: int | None = None,
    batch_size: int = 4,
    device: str | None = None,
    image_size: int | None = None,
    progress: bool = True,
    spread: bool = False,
    cache: ReferenceCache | None = None,
) -> EvaluationReport:
    """Run the reconstruction protocol; see the module docstring."""
    from tqdm import tqdm

    if max_frames is not None and max_frames < 1:
        raise EvaluationDataError(f"--max-frames must be at least 1, got {max_frames}")
    clips = select_clips(find_clips(data_dir, split), max_clips)
    model, label = _resolve_model(checkpoint_or_model, config, device)
    size = image_size or _model_image_size(model)
    faces = load_face_models()

    results: list[ClipResult] = []
    skipped: list[str] = []
    all_model: list[FrameScore] = []
    all_base: list[FrameScore] = []
    model_seconds = metric_seconds = 0.0
    bar = tqdm(total=len(clips), desc="evaluate", unit="clip", disable=not progress)
    with _eval_mode(model):
        for clip in clips:
            frames = clip.read_frames(size, max_frames, spread)
            if not frames:
                log.warning("clip %s has no readable frames; skipped", clip.path)
                skipped.append(clip.clip_id)
                bar.update(1)
                continue
            start = time.perf_counter()
            predictions = reconstruct(model, frames, batch_size)
            model_seconds += time.perf_counter() - start
            start = time.perf_counter()
            key = (str(clip.path), size, max_frames, spread)
            cached = cache.entries.get(key) if cache is not None else None
            model_scores, base_scores, reals = score_clip(faces, frames, predictions, cached)
            if cache is not None:
                cache.entries[key] = (reals, base_scores)
            metric_seconds += time.perf_counter() - start
            result = ClipResult(clip.clip_id, str(clip.path), MetricSet.from_scores(model_scores),
                                MetricSet.from_scores(base_scores))
            log.info("%s: %d frames, L1 %.4f (static %.4f), AKD %.2f (static %.2f)", clip.clip_id,
                     len(frames), result.model.l1, result.baseline.l1, result.model.akd, result.baseline.akd)
            results.append(result)
            all_model += model_scores
            all_base += base_scores
            bar.update(1)
    bar.close()
    if not results:
        raise EvaluationDataError(f"none of the {len(clips)} clip(s) in {Path(data_dir) / split} had readable frames")
    return EvaluationReport(
        checkpoint=label, data_dir=str(data_dir), split=split, image_size=size, clips=results,
        model=MetricSet.from_scores(all_model), baseline=MetricSet.from_scores(all_base),
        model_seconds=model_seconds, metric_seconds=metric_seconds, skipped=skipped,
        max_frames=max_frames, spread=spread,
    )


def clip_metric(report: dict[str, Any], metric: str, column: str = "model") -> dict[str, float]:
    """{clip id: metric} from a report dict (`EvaluationReport.to_dict()`); column "model" or "static_baseline"."""
    return {c["clip"]: c[column][metric] for c in report["clips"]}


def paired_difference(values: dict[str, float], reference: dict[str, float]) -> dict[str, float | int]:
    """values - reference per clip, over the clips both have: mean, its standard error, clips lower, clips.
    Why paired: clips differ far more from each other than checkpoints do on one clip."""
    diffs = np.array([v - reference[clip] for clip, v in values.items() if clip in reference], dtype=np.float64)
    return {"mean": float(diffs.mean()), "se": float(diffs.std(ddof=1) / np.sqrt(len(diffs))),
            "lower_on": int((diffs < 0).sum()), "clips": len(diffs)}


def format_paired(differences: dict[str, dict[str, float | int]]) -> str:
    """`paired_difference` results as one table cell: "mean ± se (lower on)" per metric, joined by " / "."""
    return " / ".join(f"{d['mean']:+.4f} ± {d['se']:.4f} ({d['lower_on']})" for d in differences.values())


def evaluate_checkpoint(checkpoint_or_model: Any, data_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """`evaluate` as a JSON-ready dict (what `reenact evaluate --json` writes)."""
    return evaluate(checkpoint_or_model, data_dir, **kwargs).to_dict()


def reconstruct(model: Any, frames: list[np.ndarray], batch_size: int = 4) -> list[np.ndarray]:
    """Drive frame 0 by every frame with absolute keypoints; HWC float predictions in [0,1].

    A generator with `encode_source`/`animate` (ours) encodes the avatar once per clip, as the app does;
    any other module (a wrapper, a test double) is called as `generator(source, kp_driving=, kp_source=)`.
    """
    import torch

    device = _model_device(model)
    generator = model.generator
    cached = hasattr(generator, "encode_source") and hasattr(generator, "animate")
    source = torch.from_numpy(frames[0]).permute(2, 0, 1)[None].to(device)
    out: list[np.ndarray] = []
    with torch.no_grad():
        kp_source = model.kp_detector(source)
        state = generator.encode_source(source, kp_source) if cached else None
        step = max(1, batch_size)
        for begin in range(0, len(frames), step):
            driving = torch.from_numpy(np.stack(frames[begin:begin + step])).permute(0, 3, 1, 2).to(device)
            n = driving.shape[0]
            kp_driving = model.kp_detector(driving)
            if cached:
                prediction = generator.animate(_batched(state, n), kp_driving)
            else:
                prediction = generator(source.expand(n, -1, -1, -1), kp_driving=kp_driving,
                                       kp_source=_batched(kp_source, n))
            prediction = prediction["prediction"].float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
            out.extend(prediction)
    return out


def _batched(tensors: dict[str, Any], n: int) -> dict[str, Any]:
    """Batch-1 tensors viewed as a batch of n (expand: no copy)."""
    return {key: value.expand(n, *value.shape[1:]) for key, value in tensors.items()}


def score_clip(
    faces: Any, frames: list[np.ndarray], predictions: list[np.ndarray],
    reference: tuple[list[FaceObservation], list[FrameScore]] | None = None,
) -> tuple[list[FrameScore], list[FrameScore], list[FaceObservation]]:
    """Model and static-baseline scores, and the real frames' observations.

    `reference` (real observations and baseline scores from an earlier call on the same frames) skips the
    model-independent half of the work.
    """
    if reference is None or len(reference[0]) != len(frames):
        reference = _reference_scores(faces, frames)
    reals, base_scores = reference
    model_scores = [compare(real_float, real, generated, observe_generated(faces, to_uint8(generated), real))
                    for real_float, real, generated in zip(frames, reals, predictions)]
    return model_scores, base_scores, reals


def _reference_scores(faces: Any, frames: list[np.ndarray]) -> tuple[list[FaceObservation], list[FrameScore]]:
    """dlib's observation of every real frame and the static baseline's scores (source observations are
    cached per face box)."""
    source = frames[0]
    source8 = to_uint8(source)
    source_cache: dict[tuple, FaceObservation] = {}
    reals, base_scores = [], []
    for real_float in frames:
        real = faces.observe(to_uint8(real_float))
        reals.append(real)
        key = (real.box, real.detected)
        if key not in source_cache:
            source_cache[key] = observe_generated(faces, source8, real)
        base_scores.append(compare(real_float, real, source, source_cache[key]))
    return reals, base_scores


def _resolve_model(checkpoint_or_model: Any, config: Any, device: str | None) -> tuple[Any, str]:
    if hasattr(checkpoint_or_model, "kp_detector") and hasattr(checkpoint_or_model, "generator"):
        if device is not None:
            checkpoint_or_model.to(device)
        return checkpoint_or_model, "<in-memory model>"
    from models import load_checkpoint

    path = None if checkpoint_or_model is None else Path(checkpoint_or_model)
    model = load_checkpoint(path, config)
    model.to(device or "cpu")
    return model, str(path) if path else "<bundled weights>"


def _model_image_size(model: Any) -> int:
    config = getattr(model, "config", None)
    return int(getattr(config, "image_size", 256) or 256)


def _model_device(model: Any) -> Any:
    import torch

    for module in (model.generator, model.kp_detector):
        if hasattr(module, "parameters"):
            for parameter in module.parameters():
                return parameter.device
    return torch.device("cpu")


class _eval_mode:
    """Put the networks in eval mode and restore their previous modes (the trainer's model stays trainable)."""

    def __init__(self, model: Any):
        self.modules = [m for m in (model.kp_detector, model.generator) if hasattr(m, "train")]
        self.modes: list[bool] = []

    def __enter__(self) -> None:
        self.modes = [m.training for m in self.modules]
        for module in self.modules:
            module.eval()

    def __exit__(self, *exc: Any) -> None:
        for module, mode in zip(self.modules, self.modes):
            module.train(mode)


def _prepare(frame_bgr: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if frame_bgr.ndim == 2:
        frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
    elif frame_bgr.shape[2] == 4:
        frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_BGRA2BGR)
    if frame_bgr.shape[:2] != (size, size):
        shrink = frame_bgr.shape[0] > size or frame_bgr.shape[1] > size
        frame_bgr = cv2.resize(frame_bgr, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
    if rgb.dtype == np.uint16:
        return (rgb.astype(np.float32) / 65535.0)
    return rgb.astype(np.float32) / 255.0


def _read_folder(folder: Path, max_frames: int | None) -> list[np.ndarray]:
    import cv2

    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:max_frames]
    frames = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise MediaError(f"can't read frame {path}: damaged or not an image; re-run prepare-data or delete it")
        frames.append(image)
    return frames


def _read_video(path: Path, max_frames: int | None) -> list[np.ndarray]:
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise MediaError(f"can't open video {path}: unsupported codec or damaged file")
    frames = []
    try:
        while max_frames is None or len(frames) < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    return frames
