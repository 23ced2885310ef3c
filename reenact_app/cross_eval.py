"""Cross-identity evaluation: held-out clips drive a set of avatars through the app's own session and
engine; dlib measures whether mouth, eyes, brows and head follow (`training.expression_metrics`).

Everything that does not depend on the model is computed once in `CrossData` (driver crops with their
face mesh, dlib on every driver frame, the avatars' crops, landmarks and identity embedding, the mesh-warp
reference row), so a script can evaluate several session variants on the same data:

    data = load_cross_data("prepared", default_avatar_paths(), clips=6, frames=48)
    engine = create_engine(None, "auto")
    base = evaluate_cross(engine, data)
    arm = evaluate_cross(engine, data, session_factory=lambda e: AnimationSession(e, MotionSettings(adapt_scale=False)))
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from reenact_app.drive import DriverCrop
from reenact_app.engines.base import Engine
from reenact_app.expression import ExpressionSettings
from reenact_app.session import AnimationSession, MotionSettings
from reenact_common.errors import ConfigError
from training import expression_metrics as X
from training.mesh_warp import MeshWarp

log = logging.getLogger(__name__)

# The default avatar set: the two bundled paintings and six portraits of people who are in none of the
# clips (frontal; young and old, women and men, photographs and paintings). ("assets", path) is inside the
# bundled assets; ("shared", path) inside the project's shared data folder, next to the repository
# (REENACT_SHARED overrides it).
DEFAULT_AVATARS: tuple[tuple[str, str], ...] = (
    ("assets", "avatars/monalisa.jpg"),
    ("assets", "avatars/gogol.jpg"),
    ("shared", "data/stills/KwaiVGI+LivePortrait/assets/examples/source/s12.jpg"),  # old man, photo
    ("shared", "data/stills/KwaiVGI+LivePortrait/assets/examples/source/s2.jpg"),  # young man, b/w photo
    ("shared", "data/stills/KwaiVGI+LivePortrait/assets/examples/source/s42.jpg"),  # young woman, photo
    ("shared", "data/stills/KwaiVGI+LivePortrait/assets/examples/source/s1.jpg"),  # woman, colour photo
    ("shared", "data/stills/KwaiVGI+LivePortrait/assets/examples/source/s5.jpg"),  # child, painting
    ("shared", "data/stills/KwaiVGI+LivePortrait/assets/examples/source/s8.jpg"),  # woman, painting
)
IDENTITY_FRAMES = 8  # output frames per pair whose identity embedding is compared with the avatar's
STRIP_AVATARS = 4  # avatar rows in the frame strip
STRIP_COLUMNS = 6
NEUTRAL_CHOICES = ("first", "rest")


def shared_dir() -> Path:
    """The project's shared data folder: REENACT_SHARED, else `shared/` next to the repository."""
    override = os.environ.get("REENACT_SHARED")
    return Path(override) if override else Path(__file__).resolve().parent.parent.parent / "shared"


def default_avatar_paths() -> list[Path]:
    from reenact_common.paths import assets_dir

    roots = {"assets": assets_dir(), "shared": shared_dir()}
    return [roots[root] / relative for root, relative in DEFAULT_AVATARS]


# -- data that does not depend on the model -----------------------------------------------------------
@dataclass
class DriverClip:
    clip_id: str
    drivers: list[DriverCrop]  # model-size crops with their face mesh
    track: X.FaceTrack  # dlib on every driver crop
    neutral: int = 0  # the frame the session calibrates on



@dataclass
class Avatar:
    name: str
    path: str
    crop: np.ndarray  # uint8 RGB at model size, framed as the app frames it
    mesh: np.ndarray | None  # face-mesh landmarks of the crop (None: mediapipe finds no face)
    track: X.FaceTrack  # dlib on the crop (one frame, with embedding)
    box: tuple[int, int, int, int] | None  # dlib's face box on the crop (output frames fall back to it)

    @property
    def embedding(self) -> np.ndarray:
        return self.track.embeddings[0]


@dataclass
class CrossData:
    clips: list[DriverClip]
    avatars: list[Avatar]
    image_size: int
    source: str  # where the clips came from
    neutral: str = "first"  # how each clip's calibration frame was chosen
    reference: list[X.PairScore] | None = None  # mesh-warp row, computed once on demand
    reference_seconds: float = 0.0


def _prepared_clips(data_dir: str | Path, clips: int | None, split: str) -> list[Any]:
    """The chosen clips of a prepared split (fails in one line on a missing or empty folder)."""
    from training.evaluate import find_clips, select_clips

    return select_clips(find_clips(data_dir, split), clips)


def _crop_landmarker(size: int) -> Callable[[np.ndarray, float], np.ndarray | None]:
    """Face mesh of ready-made face crops, run as the app's tracker runs it (video mode, on its own
    stabilised crop) and returned in the given crop's pixels."""
    from reenact_app.tracking import FaceTracker, TrackerConfig

    tracker = FaceTracker(TrackerConfig(crop_size=size, use_mesh=True))

    def landmarks(crop: np.ndarray, timestamp: float) -> np.ndarray | None:
        return tracker.track(crop, timestamp=timestamp).landmarks  # frame pixels = this crop's pixels

    landmarks.close = tracker.close  # type: ignore[attr-defined]
    return landmarks


def _prepared_drivers(frames: list[np.ndarray], size: int, fps: float = 25.0) -> list[DriverCrop]:
    landmarker = _crop_landmarker(size)
    try:
        return [DriverCrop(frame, landmarker(frame, i / fps)) for i, frame in enumerate(frames)]
    finally:
        landmarker.close()  # type: ignore[attr-defined]


def _video_drivers(path: Path, frames: int | None, size: int) -> list[DriverCrop]:
    """A raw video through the app's own tracker crops (as `reenact animate` sees it)."""
    from reenact_app.drive import StageTimes, decode_and_crop, make_croppers
    from reenact_common.video_io import iter_frames, probe_video

    info = probe_video(path)
    croppers = make_croppers(True, size, landmarks=True)
    try:
        return [d for _, d in decode_and_crop(iter_frames(path, frames), croppers, info.fps or 25.0, StageTimes())]
    finally:
        croppers.close()


def _load_avatar(path: Path, size: int, faces: Any) -> Avatar:
    from reenact_app.images import load_avatar_image
    from reenact_app.tracking import prepare_avatar

    crop = prepare_avatar(load_avatar_image(path), size).crop
    mesh = _avatar_mesh(crop)
    box = faces.detect(crop)
    track = X.observe_sequence(faces, [crop], embeddings=1)
    if box is None:
        log.warning("dlib finds no face in avatar %s: its landmarks come from the whole crop", path.name)
    return Avatar(path.stem, str(path), crop, mesh, track, box)


def _avatar_mesh(crop: np.ndarray) -> np.ndarray | None:
    """The avatar crop's face mesh, as the app computes it for expression retargeting (None: no face)."""
    from reenact_app.drive import avatar_landmarks

    return avatar_landmarks(crop)


def load_cross_data(data_dir: str | Path | None, avatars: Sequence[str | Path], *, clips: int | None = None,
                    frames: int | None = None, size: int = 256, split: str = "test",
                    driving_videos: Sequence[str | Path] = (), neutral: str = "first",
                    progress: bool = True) -> CrossData:
    """Driver clips (prepared folder and/or raw videos), their dlib tracks, and the avatars.

    neutral: "first" calibrates each pair on the clip's first frame (the app's default: calibrate on the
    first frame); "rest" on its most neutral frame (`most_neutral_frame`), as a user calibrating at rest."""
    if neutral not in NEUTRAL_CHOICES:
        raise ConfigError(f"neutral must be one of {', '.join(NEUTRAL_CHOICES)}, got {neutral!r}")
    from tqdm import tqdm

    from training.metrics import load_face_models, to_uint8

    if not avatars:
        raise ConfigError("no avatars to drive: give avatar images (or use the default set)")
    missing = [str(a) for a in avatars if not Path(a).is_file()]
    if missing:
        raise ConfigError(f"avatar image(s) not found: {', '.join(missing)}")
    if data_dir is None and not driving_videos:
        raise ConfigError("nothing to drive with: give --data (a prepared folder) or --driving-videos")
    prepared = _prepared_clips(data_dir, clips, split) if data_dir is not None else []  # before slow work
    faces = load_face_models()
    loaded_avatars = [_load_avatar(Path(a), size, faces) for a in avatars]
    names = [a.name for a in loaded_avatars]
    for avatar in loaded_avatars:  # same file stem in two folders: keep the names apart
        if names.count(avatar.name) > 1:
            avatar.name = f"{Path(avatar.path).parent.name}/{avatar.name}"
    sources: list[tuple[str, Callable[[], list[DriverCrop]]]] = []
    for clip in prepared:
        sources.append((clip.clip_id, lambda c=clip: _prepared_drivers([to_uint8(f) for f in c.read_frames(size, frames)], size)))
    for video in driving_videos:
        sources.append((Path(video).stem, lambda v=Path(video): _video_drivers(v, frames, size)))
    driver_clips = []
    for clip_id, make in tqdm(sources, desc="drivers (mesh + dlib)", unit="clip", disable=not progress):
        drivers = make()
        if len(drivers) < 2:
            log.warning("clip %s has %d frame(s): skipped", clip_id, len(drivers))
            continue
        track = X.observe_sequence(faces, [d.crop for d in drivers])
        driver_clips.append(DriverClip(clip_id, drivers, track, X.most_neutral_frame(track) if neutral == "rest" else 0))
    if not driver_clips:
        raise ConfigError("no driver clip has at least 2 frames")
    source = ", ".join(filter(None, [str(data_dir) if data_dir else "", *(str(v) for v in driving_videos)]))
    return CrossData(driver_clips, loaded_avatars, size, source, neutral=neutral)


# -- driving ------------------------------------------------------------------------------------------
SessionFactory = Callable[[Engine], AnimationSession]


def default_session(engine: Engine) -> AnimationSession:
    """The app's defaults: relative motion, first frame as the calibrated neutral, adapt scale on,
    expression retargeting at strength 1."""
    return AnimationSession(engine, MotionSettings())


def drive_avatar(session: AnimationSession, avatar: Avatar, drivers: Sequence[DriverCrop],
                 neutral: int = 0) -> list[np.ndarray]:
    """One (clip, avatar) pair, exactly as the app drives it: a fresh calibration on frame `neutral` (the
    first frame: the one `animate` sees first, as in the app), then every frame in order."""
    session.set_avatar(avatar.crop, landmarks=avatar.mesh)
    if neutral:
        session.calibrate(drivers[neutral].crop, landmarks=drivers[neutral].landmarks)
    else:
        session.calibrate()
    return [session.animate(d.crop, landmarks=d.landmarks) for d in drivers]


def mesh_warp_frames(avatar: Avatar, clip: DriverClip) -> list[np.ndarray]:
    warp = MeshWarp.build(avatar.crop, avatar.track.landmarks[0])
    reference = clip.track.landmarks[clip.neutral]
    return [warp.warp(points, reference) for points in clip.track.landmarks]


def _score(faces: Any, clip: DriverClip, avatar: Avatar, outputs: list[np.ndarray]) -> X.PairScore:
    track = X.observe_sequence(faces, outputs, embeddings=IDENTITY_FRAMES, fallback_box=avatar.box)
    return X.score_pair(clip.clip_id, avatar.name, clip.track, track, avatar.embedding)


def reference_scores(data: CrossData, progress: bool = True) -> list[X.PairScore]:
    """The mesh-warp row on every pair (computed once per CrossData)."""
    if data.reference is None:
        from tqdm import tqdm

        from training.metrics import load_face_models

        faces = load_face_models()
        start = time.perf_counter()
        pairs = [(c, a) for c in data.clips for a in data.avatars]
        data.reference = [_score(faces, c, a, mesh_warp_frames(a, c))
                          for c, a in tqdm(pairs, desc="mesh warp", unit="pair", disable=not progress)]
        data.reference_seconds = time.perf_counter() - start
    return data.reference


# -- report -------------------------------------------------------------------------------------------
@dataclass
class CrossReport:
    label: str
    engine: str
    source: str
    avatars: list[str]
    clips: list[str]
    frames: int  # driving frames over all clips
    model: list[X.PairScore]
    reference: list[X.PairScore] | None
    seconds: dict[str, float] = field(default_factory=dict)
    neutral: str = "first"

    @property
    def model_summary(self) -> X.MethodSummary:
        return X.summarise(self.model)

    @property
    def reference_summary(self) -> X.MethodSummary | None:
        return X.summarise(self.reference) if self.reference else None

    def to_dict(self) -> dict[str, Any]:
        rows = {"model": self.model_summary.to_dict()}
        if self.reference:
            rows["mesh_warp"] = self.reference_summary.to_dict()
        return {
            "protocol": "cross-identity",
            "description": "held-out clips drive every avatar through the app's session (relative motion, first "
            "frame as the calibrated neutral); dlib 68 landmarks on driver and output; per (clip, avatar) pair "
            "and feature: Pearson r and gain = std(output)/std(driver), counted where the driver's std exceeds "
            "the feature's noise threshold; summary: mean r and median gain over counted pairs",
            "label": self.label,
            "neutral": self.neutral,
            "engine": self.engine,
            "data": self.source,
            "avatars": self.avatars,
            "clips": self.clips,
            "driving_frames": self.frames,
            "noise_thresholds": X.NOISE_THRESHOLDS,
            "units": {"mouth": "inner-lip gap / inter-ocular distance", "eyes": "eye aspect ratio",
                      "brows": "brow-to-eye distance / inter-ocular distance", "roll": "radians",
                      "yaw": "nose offset along the eye line / jaw width",
                      "pitch": "nose offset across the eye line / eye-to-chin distance",
                      "identity_distance": "dlib embedding L2, output frame to avatar crop (same person < ~0.6)",
                      "face_lost": "fraction of output frames where dlib's detector finds no face"},
            "summary": rows,
            "model_by_avatar": {name: X.summarise([p for p in self.model if p.avatar == name]).to_dict()
                                for name in self.avatars},
            "pairs": {"model": [p.to_dict() for p in self.model],
                      **({"mesh_warp": [p.to_dict() for p in self.reference]} if self.reference else {})},
            "seconds": self.seconds,
        }

    def table(self) -> str:
        """Markdown table: one row per method; cells are mean r / median gain (pairs counted)."""
        head = ["method", *(X.FEATURE_LABELS[f] for f in X.FEATURES), "identity dist.", "face lost"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        rows = [("model" + (f" ({self.label})" if self.label else ""), self.model_summary)]
        if self.reference:
            rows.append(("mesh-warp reference", self.reference_summary))
        for name, summary in rows:
            cells = [name]
            for feature in X.FEATURES:
                s = summary.features[feature]
                cells.append("-" if not s.pairs else f"{s.mean_r:.2f} / {s.median_gain:.2f} ({s.pairs})")
            identity = "-" if summary.identity_distance is None else f"{summary.identity_distance:.3f}"
            cells += [identity, f"{summary.face_lost:.3f}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append(f"cells: mean r / median gain (pairs where the driver moves the feature); "
                     f"{len(self.clips)} clips x {len(self.avatars)} avatars, {self.frames} driving frames")
        return "\n".join(lines)


def evaluate_cross(engine: Engine, data: CrossData, *, session_factory: SessionFactory | None = None,
                   settings: MotionSettings | None = None, expression: ExpressionSettings | None = None,
                   reference: bool = False, strip: str | Path | None = None, label: str = "",
                   progress: bool = True) -> CrossReport:
    """Drive every avatar with every clip; score model (and the mesh-warp reference when asked).

    `session_factory(engine)` builds the session for each pair (default: the app's defaults); `settings`
    and `expression` are the shortcut for `AnimationSession(engine, settings, expression)`. A strip (JPEG)
    shows the clip whose driver moves the mouth most."""
    from tqdm import tqdm

    from training.metrics import load_face_models

    if session_factory is None:
        session_factory = lambda e: AnimationSession(e, settings or MotionSettings(), expression)  # noqa: E731
    faces = load_face_models()
    strip_clip = max(data.clips, key=lambda c: c.track.features["mouth"].std()).clip_id if strip else None
    strip_rows: list[tuple[str, list[np.ndarray]]] = []
    scores: list[X.PairScore] = []
    model_seconds = metric_seconds = 0.0
    pairs = [(c, a) for c in data.clips for a in data.avatars]
    for clip, avatar in tqdm(pairs, desc="cross-identity", unit="pair", disable=not progress):
        t0 = time.perf_counter()
        outputs = drive_avatar(session_factory(engine), avatar, clip.drivers, clip.neutral)
        t1 = time.perf_counter()
        scores.append(_score(faces, clip, avatar, outputs))
        metric_seconds += time.perf_counter() - t1
        model_seconds += t1 - t0
        if clip.clip_id == strip_clip and len(strip_rows) < STRIP_AVATARS:
            strip_rows.append((avatar.name, outputs))
    reference_rows = reference_scores(data, progress) if reference else None
    frames = sum(len(c.drivers) for c in data.clips)
    report = CrossReport(
        label, engine.describe(), data.source, [a.name for a in data.avatars], [c.clip_id for c in data.clips],
        frames, scores, reference_rows,
        {"model_per_frame": model_seconds / max(frames * len(data.avatars), 1),
         "metrics_per_frame": metric_seconds / max(frames * len(data.avatars), 1),
         "model_total": model_seconds, "metrics_total": metric_seconds,
         "reference_total": data.reference_seconds if reference else 0.0},
        data.neutral,
    )
    if strip:
        clip = next(c for c in data.clips if c.clip_id == strip_clip)
        write_cross_strip(strip, clip, strip_rows, data.avatars[0] if reference else None)
    return report


def write_cross_strip(path: str | Path, clip: DriverClip, rows: list[tuple[str, list[np.ndarray]]],
                      reference_avatar: Avatar | None = None) -> None:
    """Driver row, the avatars' rows, and (when given) the mesh warp of the first avatar for comparison."""
    from training.expression_strip import pick_columns, render_strip, write_strip

    columns = pick_columns(clip.track.features["mouth"], clip.track.features["eyes"], STRIP_COLUMNS)
    all_rows = [(f"driver {clip.clip_id[-24:]}", [d.crop for d in clip.drivers]), *rows]
    if reference_avatar is not None:
        all_rows.append((f"mesh warp {reference_avatar.name}", mesh_warp_frames(reference_avatar, clip)))
    write_strip(path, render_strip(all_rows, columns))
    log.info("strip: %s (clip %s, frames %s)", path, clip.clip_id, columns)
