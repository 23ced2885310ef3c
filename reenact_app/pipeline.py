"""LivePipeline: frame source -> face tracker -> animation session -> compositor -> sinks.

    pipe = LivePipeline(source, engine, avatar=image_rgb_or_AvatarCrop, config=PipelineConfig(),
                        sinks=[VirtualCamera(...), Recorder(...)], on_frame=callback)
    pipe.start()                 # worker thread; source started if needed
    pipe.calibrate()             # take the next driving frame as the neutral reference
    pipe.wait(frames=100)        # or consume frames: on_frame(PipelineFrame) / pipe.wait_frame()
    print(pipe.stats.summary())  # per-stage ms, fps, end-to-end latency
    pipe.stop()

Why this shape:
- One worker thread owns the tracker, the session and the engine (none of them is thread-safe);
  control calls from other threads (calibrate, set_avatar, freeze, settings) are queued and run by
  the worker between frames, so they never race a frame in flight.
- The worker always takes the newest captured frame (FrameSource.read) and hands the newest output
  to `on_frame`: latency never accumulates in queues, slow consumers just skip frames.
- No face: the last output is held for `hold_timeout` s, then fades to the neutral avatar; the same
  happens when the camera is lost, and sinks keep receiving frames so a call never freezes.
- A sink that fails (virtual camera gone, disk full) is removed and reported; the call goes on.
- Per-stage timings (track, keypoints, generate, composite, sinks) and the end-to-end latency from
  the capture timestamp are collected in `PipelineStats`, which the GUI and the CLI print.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import cv2
import numpy as np

from reenact_app.capture import Frame, FrameSource
from reenact_app.compositor import blend, letterbox
from reenact_app.engines.base import Animation, Engine
from reenact_common.errors import ReenactError
from reenact_app.filters import OneEuroConfig
from reenact_app.full_resolution import FullResolutionCompositor, FullResolutionConfig
from reenact_app.expression import ExpressionSettings
from reenact_app.session import AnimationSession, MotionSettings, default_keypoint_smoothing
from reenact_app.sinks import Sink
from reenact_app.tracking import (
    AvatarCrop, CropBox, FaceTracker, TrackerConfig, landmarks_in_crop, mesh_landmarks, prepare_avatar,
)

log = logging.getLogger(__name__)

STAGES = ("wait", "track", "keypoints", "generate", "composite", "sinks", "total")


@dataclass
class PipelineConfig:
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    motion: MotionSettings = field(default_factory=MotionSettings)
    expression: ExpressionSettings = field(default_factory=ExpressionSettings)
    # Keypoint smoothing on the (relative) driving keypoints, done by the session; defaults from docs/pipeline.md.
    keypoint_smoothing: OneEuroConfig = field(default_factory=default_keypoint_smoothing)
    paste_back: bool = True  # output = animated crop blended into the full avatar picture
    feather: float = 0.12  # paste-back mask edge, fraction of the crop
    max_avatar_side: int = 1280  # the full avatar picture is downscaled to this for paste-back output
    # Paste-back at the avatar picture's own resolution: where the avatar is visible its own pixels are
    # warped by the model's motion instead of upscaling the 256 px crop (reenact_app/full_resolution.py).
    full_resolution: bool = True
    max_crop_side: int = 1024  # full resolution: the face box is worked at most this many pixels wide
    output_size: tuple[int, int] | None = None  # (w, h) letterbox of the output; None = natural size
    mirror: bool = False  # flip the driving frame (selfie view)
    hold_timeout: float = 1.0  # seconds to hold the last output when the face is lost
    fade_duration: float = 0.7  # then fade to the neutral avatar over this many seconds
    read_timeout: float = 0.25  # no frame for this long: run an idle tick (hold/fade, feed sinks)
    stats_window: int = 120  # frames in the rolling statistics
    stop_when_source_ends: bool = True
    max_frames: int | None = None  # stop after this many outputs (CLI --frames, tests)


@dataclass
class PipelineFrame:
    """One output of the pipeline, handed to `on_frame` (on the worker thread)."""

    index: int
    output: np.ndarray  # uint8 RGB: what the virtual camera/recorder get
    crop_output: np.ndarray | None  # the animated crop at model size (None when not animated)
    driving: np.ndarray | None  # the driving frame (mirrored if configured), None on idle ticks
    box: CropBox | None  # crop box in driving-frame pixels
    landmarks: np.ndarray | None  # (468, 2) face mesh in driving-frame pixels
    face_found: bool
    state: str  # live, holding, fading, neutral, no-avatar, source-lost, error
    captured_at: float
    latency_ms: float
    stage_ms: dict[str, float]
    stats: dict[str, Any] = field(default_factory=dict)
    media_time: float | None = None  # of the driving frame on the pipeline's clock (None on idle ticks)

    @property
    def face_box(self) -> tuple[float, float, float, float] | None:
        """x0, y0, x1, y1 of the (possibly rotated) crop box, for drawing."""
        if self.box is None:
            return None
        c = self.box.corners()
        return (float(c[:, 0].min()), float(c[:, 1].min()), float(c[:, 0].max()), float(c[:, 1].max()))


class PipelineStats:
    """Rolling and whole-run timings. Thread-safe; snapshot() is cheap enough for every frame."""

    def __init__(self, window: int = 120):
        self._lock = threading.Lock()
        self._window = window
        self.reset()

    def reset(self) -> None:
        with self._lock:
            keys = STAGES + ("latency",)
            self._recent: dict[str, deque] = {s: deque(maxlen=self._window) for s in keys}
            # whole run: exact mean from running sums, median/p95 over the last 5000 frames (bounded
            # memory for hour-long calls)
            self._sum = {s: 0.0 for s in keys}
            self._n = {s: 0 for s in keys}
            self._long: dict[str, deque] = {s: deque(maxlen=5000) for s in keys}
            self._out_times: deque = deque(maxlen=self._window)
            self.frames_in = 0
            self.frames_out = 0
            self.frames_no_face = 0
            self.errors = 0
            self.state = "starting"
            self.face_found = False
            self.source_state = ""
            self.messages: deque = deque(maxlen=20)
            self.started = time.monotonic()

    def add(self, stage_ms: dict[str, float], latency_ms: float | None) -> None:
        with self._lock:
            items = list(stage_ms.items()) + ([("latency", latency_ms)] if latency_ms is not None else [])
            for k, v in items:
                self._recent[k].append(v)
                self._long[k].append(v)
                self._sum[k] += v
                self._n[k] += 1

    def mark_output(self) -> None:
        with self._lock:
            self.frames_out += 1
            self._out_times.append(time.monotonic())

    def message(self, text: str) -> None:
        with self._lock:
            self.messages.append((time.time(), text))

    @property
    def fps(self) -> float:
        with self._lock:
            if len(self._out_times) < 2:
                return 0.0
            span = self._out_times[-1] - self._out_times[0]
            return (len(self._out_times) - 1) / span if span > 0 else 0.0

    def snapshot(self) -> dict[str, Any]:
        """Rolling means (ms) per stage, fps, latency, counters and state: what a status bar shows."""
        fps = self.fps
        with self._lock:
            ms = {k: float(np.mean(v)) if v else 0.0 for k, v in self._recent.items()}
            return {
                "fps": fps,
                "latency_ms": ms.pop("latency"),
                "stage_ms": ms,
                "frames_in": self.frames_in,
                "frames_out": self.frames_out,
                "frames_no_face": self.frames_no_face,
                "errors": self.errors,
                "state": self.state,
                "face_found": self.face_found,
                "source": self.source_state,
                "messages": [m for _, m in self.messages],
            }

    def totals(self) -> dict[str, dict[str, float]]:
        """Whole-run mean, median and p95 (of the last 5000 frames) per stage and latency, in ms."""
        with self._lock:
            out = {}
            for k, v in self._long.items():
                if v:
                    a = np.asarray(v)
                    out[k] = {"mean": self._sum[k] / self._n[k], "median": float(np.median(a)), "p95": float(np.percentile(a, 95))}
            return out

    def summary(self) -> str:
        """A small table for the CLI."""
        t = self.totals()
        elapsed = max(1e-9, time.monotonic() - self.started)
        lines = [f"{'stage':<10} {'mean ms':>8} {'median':>8} {'p95':>8}"]
        for k in STAGES + ("latency",):
            if k in t:
                lines.append(f"{k:<10} {t[k]['mean']:8.1f} {t[k]['median']:8.1f} {t[k]['p95']:8.1f}")
        lines.append(
            f"frames in {self.frames_in}, out {self.frames_out}, no face {self.frames_no_face}, "
            f"errors {self.errors}; {self.frames_out / elapsed:.1f} fps over {elapsed:.1f} s "
            f"(rolling {self.fps:.1f} fps)"
        )
        return "\n".join(lines)


def _full_config(cfg: "PipelineConfig") -> FullResolutionConfig:
    return FullResolutionConfig(cfg.max_crop_side, cfg.feather)


class _Avatar:
    """The avatar as the pipeline uses it: model-size crop + downscaled full picture for paste-back."""

    def __init__(self, av: AvatarCrop, size: int, max_side: int):
        crop = av.crop if av.crop.shape[0] == size else cv2.resize(av.crop, (size, size), interpolation=cv2.INTER_AREA)
        h, w = av.image.shape[:2]
        f = min(1.0, max_side / max(h, w))
        image = av.image if f == 1.0 else cv2.resize(av.image, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
        box = av.box.scaled(f)
        self.source = AvatarCrop(image, crop, box, box.matrix(size), av.face_found, av.message, av.num_faces)
        self.crop = crop
        self.neutral_full = image
        self.landmarks = mesh_landmarks(crop)  # expression retargeting; None for faces the mesh misses
        self._full: FullResolutionCompositor | None = None

    def full_resolution(self, config: FullResolutionConfig) -> FullResolutionCompositor:
        """The full-resolution compositor, built on first use and again when its settings change."""
        if self._full is None or self._full.config != config:
            self._full = FullResolutionCompositor(self.neutral_full, self.source.box, self.crop.shape[0], config)
        return self._full

    def prepare(self, cfg: "PipelineConfig") -> None:
        """Build the full-resolution maps now (avatar switch), not on the first live frame."""
        if cfg.paste_back and cfg.full_resolution:
            self.full_resolution(_full_config(cfg))

    def compose(self, animation: Animation, cfg: "PipelineConfig") -> np.ndarray:
        """The output picture: the full avatar picture with the animated face, or the crop alone."""
        if not cfg.paste_back:
            return animation.image
        if cfg.full_resolution:
            return self.full_resolution(_full_config(cfg)).compose(animation)
        return self.source.paste_back(animation.image, cfg.feather)

    def crop_to_output(self, cfg: "PipelineConfig") -> np.ndarray:
        """2x3: model-crop pixels -> pixels of the picture `compose` returns."""
        if not cfg.paste_back:
            return np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        if cfg.full_resolution:
            return cv2.invertAffineTransform(self.full_resolution(_full_config(cfg)).matrix)
        return cv2.invertAffineTransform(self.source.matrix)

    def neutral(self, cfg: "PipelineConfig") -> np.ndarray:
        if not cfg.paste_back:
            return self.crop
        if cfg.full_resolution:
            return self.full_resolution(_full_config(cfg)).image
        return self.neutral_full


class _MediaClock:
    """The driving frames' media time as the tracker and the filters see it: continuous across sources.

    Each source's clock starts at its own zero; after a switch the new clock is shifted to go on one
    frame after the old one, so the One Euro filters never see time run backwards.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._last: float | None = None
        self._rebase = False

    def continue_with_next(self) -> None:
        """The next frame comes from a new source."""
        self._rebase = True

    def media_time(self, source_time: float, fps: float) -> float:
        if self._rebase and self._last is not None:
            self._offset = self._last + 1.0 / max(fps or 30.0, 1.0) - source_time
        self._rebase = False
        self._last = source_time + self._offset
        return self._last


class LivePipeline:
    """See the module docstring. All public methods are thread-safe."""

    def __init__(
        self,
        source: FrameSource,
        engine: Engine,
        avatar: np.ndarray | AvatarCrop | None = None,
        config: PipelineConfig | None = None,
        sinks: list[Sink] | None = None,
        on_frame: Callable[[PipelineFrame], None] | None = None,
        on_error: Callable[[Exception], None] | None = None,
    ):
        self.config = config or PipelineConfig()
        self.source = source
        self.engine = engine
        self.config.tracker = replace(self.config.tracker, crop_size=engine.image_size)
        self.session = AnimationSession(engine, self.config.motion, self.config.expression,
                                        self.config.keypoint_smoothing)
        self.tracker = FaceTracker(self.config.tracker)
        self.sinks: list[Sink] = list(sinks or [])
        self.on_frame = on_frame
        self.on_error = on_error
        self.stats = PipelineStats(self.config.stats_window)
        self._avatar: _Avatar | None = None
        self._pending_avatar: AvatarCrop | None = None
        self._commands: queue.Queue[Callable[[], None]] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._out_cond = threading.Condition()
        self._latest: PipelineFrame | None = None
        self._index = 0
        self._last_live: np.ndarray | None = None  # last animated output
        self._last_face_time: float | None = None
        self._last_driving: np.ndarray | None = None
        self._fade_from: np.ndarray | None = None
        self._clock = _MediaClock()
        if avatar is not None:
            self.set_avatar(avatar)

    # -- control (any thread) -------------------------------------------------------------------
    def _submit(self, fn: Callable[[], None]) -> None:
        if self._thread is None or not self._thread.is_alive():
            fn()  # not running: apply directly
        else:
            self._commands.put(fn)

    def set_avatar(self, avatar: np.ndarray | AvatarCrop) -> AvatarCrop:
        """Switch the avatar. An image is cropped here (caller's thread); encoding runs on the worker.
        Returns the AvatarCrop (check .face_found / .message to warn the user)."""
        if not isinstance(avatar, AvatarCrop):
            avatar = prepare_avatar(avatar, self.engine.image_size, self.config.tracker)

        def apply() -> None:
            new = _Avatar(avatar, self.engine.image_size, self.config.max_avatar_side)
            # encode first: if the engine fails, the old avatar stays whole
            self.session.set_avatar(new.crop, new.landmarks)
            new.prepare(self.config)
            self._avatar = new
            if avatar.message:
                self.stats.message(avatar.message)

        self._submit(apply)
        return avatar

    def set_engine(self, engine: Engine) -> None:
        """Swap the inference engine (e.g. after a fallback); re-encodes the avatar, recalibrates."""

        def apply() -> None:
            self.engine = engine
            self.session = AnimationSession(engine, self.config.motion, self.config.expression,
                                            self.config.keypoint_smoothing)
            if engine.image_size != self.config.tracker.crop_size:
                self.tracker.update_config(crop_size=engine.image_size)
            if self._avatar is not None:
                if self._avatar.crop.shape[0] != engine.image_size:  # same size: its mesh and maps still hold
                    self._avatar = _Avatar(self._avatar.source, engine.image_size, self.config.max_avatar_side)
                    self._avatar.prepare(self.config)
                self.session.set_avatar(self._avatar.crop, self._avatar.landmarks)

        self._submit(apply)

    def set_source(self, source: FrameSource) -> None:
        """Switch the driving source (camera selector, video file) without a rebuild: sinks stay open, so
        the virtual camera stays in the call and a recording goes on. The old source is stopped, the face
        re-detected, the next frame becomes the calibration reference, and media time keeps increasing
        (the new source's clock is shifted to continue the old one's). Start `source` first to open it
        on the caller's thread rather than between two frames."""

        def apply() -> None:
            old, self.source = self.source, source
            if old is not source:
                old.stop()
            if self.running and not source.running and not source.ended:
                source.start()
            self._clock.continue_with_next()
            self.tracker.redetect()
            self.session.calibrate(None)
            log.info("driving source switched to %s", source.name)

        self._submit(apply)

    def calibrate(self) -> None:
        """Take the next driving frame as the neutral reference pose (relative motion)."""

        def apply() -> None:
            self.session.calibrate(None)

        self._submit(apply)

    def set_motion(self, **changes) -> None:
        """relative / adapt_scale / relative_jacobian, applied live."""
        self._submit(lambda: [setattr(self.session.settings, k, v) for k, v in changes.items()])

    def set_expression(self, **changes) -> None:
        """strength / mouth / eyes of expression retargeting, applied live."""
        updated = replace(self.config.expression, **changes)  # validates before the worker sees it

        def apply() -> None:
            self.config.expression = updated
            self.session.expression.settings = updated

        self._submit(apply)

    def set_keypoint_smoothing(self, config: OneEuroConfig) -> None:
        """The session's One Euro keypoint smoothing, applied live."""

        def apply() -> None:
            self.config.keypoint_smoothing = config
            self.session.set_smoothing(config)

        self._submit(apply)

    def update_tracker(self, **changes) -> None:
        """margin, shift_y, align_roll, smoothing... (see TrackerConfig)."""
        self._submit(lambda: self.tracker.update_config(**changes))

    def freeze_crop(self, on: bool = True) -> None:
        self._submit(lambda: self.tracker.freeze(on))

    def redetect(self) -> None:
        self._submit(self.tracker.redetect)

    def set_options(self, **changes) -> None:
        """paste_back, full_resolution, max_crop_side, feather, mirror, output_size, hold_timeout, fade_duration."""

        def apply() -> None:
            for k, v in changes.items():
                if not hasattr(self.config, k):
                    raise AttributeError(f"PipelineConfig has no field {k!r}")
                setattr(self.config, k, v)

        self._submit(apply)

    def add_sink(self, sink: Sink) -> None:
        """Opens the sink now (raises its ReenactError to the caller, e.g. the v4l2loopback message)."""
        sink.open()
        self._submit(lambda: self.sinks.append(sink))

    def remove_sink(self, sink: Sink) -> None:
        def apply() -> None:
            if sink in self.sinks:
                self.sinks.remove(sink)
            sink.close()

        self._submit(apply)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "LivePipeline":
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self.stats.reset()
        if self.tracker.closed:  # restarted after stop()
            self.tracker = FaceTracker(self.config.tracker)
        if not self.source.running and not self.source.ended:
            self.source.start()
        self._thread = threading.Thread(target=self._run, name="reenact-pipeline", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0, close_source: bool = True) -> None:
        """Stop the worker, close sinks (finishing recordings) and the source. Safe to call twice."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("pipeline thread did not stop within %.0f s", timeout)
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:  # noqa: BLE001
                log.exception("closing %s failed", sink.name)
        if close_source:
            self.source.stop()
        self.tracker.close()
        with self._out_cond:
            self._out_cond.notify_all()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, frames: int | None = None, timeout: float | None = None) -> bool:
        """Block until `frames` outputs were produced or the worker ended. True if the count was reached."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._out_cond:
            while True:
                if frames is not None and self.stats.frames_out >= frames:
                    return True
                if not self.running:
                    return frames is None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._out_cond.wait(0.1 if remaining is None else min(0.1, remaining))

    def wait_frame(self, after: int = -1, timeout: float | None = 1.0) -> PipelineFrame | None:
        """The newest output with index > `after` (latest-frame semantics), or None on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._out_cond:
            while self._latest is None or self._latest.index <= after:
                remaining = None if deadline is None else deadline - time.monotonic()
                if (remaining is not None and remaining <= 0) or (not self.running and self._stop.is_set()):
                    return None
                self._out_cond.wait(0.1 if remaining is None else min(0.1, remaining))
            return self._latest

    @property
    def latest(self) -> PipelineFrame | None:
        return self._latest

    def __enter__(self) -> "LivePipeline":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- worker ---------------------------------------------------------------------------------
    def _run_commands(self) -> None:
        while True:
            try:
                fn = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - a bad command must not kill the pipeline
                log.exception("pipeline command failed")
                self.stats.message(f"{type(exc).__name__}: {exc}")

    def _run(self) -> None:
        log.info("pipeline started: %s -> %s", self.source.name, self.engine.describe())
        try:
            while not self._stop.is_set():
                if self.config.max_frames is not None and self.stats.frames_out >= self.config.max_frames:
                    self.stats.state = "done"
                    break
                self._run_commands()
                frame = self.source.read(timeout=self.config.read_timeout)
                self.stats.source_state = self.source.status.state
                if frame is None:
                    if self.source.ended:
                        if self.config.stop_when_source_ends:
                            self.stats.state = "ended"
                            log.info("source ended: %s", self.source.status.message)
                            break
                        self._stop.wait(self.config.read_timeout)  # read() returns at once now
                    self._idle_tick()
                    continue
                self._process(frame)
        except Exception as exc:  # noqa: BLE001 - last resort: report, never hang the app silently
            log.exception("pipeline crashed")
            self.stats.message(f"pipeline stopped: {type(exc).__name__}: {exc}")
            self.stats.state = "error"
        finally:
            self._run_commands()
            with self._out_cond:
                self._out_cond.notify_all()
            log.info("pipeline stopped after %d frames", self.stats.frames_out)

    def _process(self, frame: Frame) -> None:
        cfg = self.config
        t_pick = time.monotonic()
        ms: dict[str, float] = {"wait": (t_pick - frame.captured_at) * 1000.0}
        self.stats.frames_in += 1
        image = frame.image[:, ::-1].copy() if cfg.mirror else frame.image
        self._last_driving = image
        media_time = self._clock.media_time(frame.media_time, self.source.fps)

        t = time.perf_counter()
        res = self.tracker.track(image, media_time)
        ms["track"] = (time.perf_counter() - t) * 1000.0
        self.stats.face_found = res.face_found

        crop_out = None
        if self._avatar is None:
            state = "no-avatar"
            output = image
        elif res.face_found and res.crop is not None:
            try:
                t = time.perf_counter()
                kp = self.session.driving_keypoints(res.crop, landmarks_in_crop(res), media_time)
                ms["keypoints"] = (time.perf_counter() - t) * 1000.0
                t = time.perf_counter()
                animation = self.engine.animate_with_motion(self.session.source, kp)
                crop_out = animation.image
                ms["generate"] = (time.perf_counter() - t) * 1000.0
            except Exception as exc:  # noqa: BLE001 - e.g. CUDA OOM: hold the output, tell the owner
                self.stats.errors += 1
                self.stats.message(f"engine {self.engine.describe()} failed: {type(exc).__name__}: {exc}")
                log.error("engine failed: %s", exc)
                if self.on_error is not None:
                    self.on_error(exc)
                crop_out = None
            t = time.perf_counter()
            if crop_out is not None:
                output = self.session.finish(self._avatar.compose(animation, cfg), kp,
                                             self._avatar.crop_to_output(cfg))
                self._last_live = output
                self._last_face_time = frame.captured_at
                self._fade_from = None
                state = "live"
            else:
                output, state = self._held_output(time.monotonic(), "error")
            ms["composite"] = (time.perf_counter() - t) * 1000.0
        else:
            self.stats.frames_no_face += 1
            t = time.perf_counter()
            output, state = self._held_output(time.monotonic(), "no-face")
            ms["composite"] = (time.perf_counter() - t) * 1000.0
        self._emit(output, crop_out, image, res.box, res.landmarks, res.face_found, state, frame.captured_at, ms,
                   media_time)

    def _neutral(self) -> np.ndarray | None:
        if self._avatar is None:
            return self._last_driving
        return self._avatar.neutral(self.config)

    def _held_output(self, now: float, why: str) -> tuple[np.ndarray, str]:
        """Hold the last live output, then fade to the neutral avatar."""
        cfg = self.config
        neutral = self._neutral()
        last = self._last_live
        if last is None or self._last_face_time is None or neutral is None or last.shape != neutral.shape:
            return (neutral if neutral is not None else np.zeros((256, 256, 3), np.uint8)), "neutral"
        gone = now - self._last_face_time
        if gone < cfg.hold_timeout:
            return last, "holding"
        k = (gone - cfg.hold_timeout) / max(cfg.fade_duration, 1e-6)
        if k >= 1.0:
            return neutral, "neutral"
        return blend(last, neutral, k), "fading"

    def _idle_tick(self) -> None:
        """No frame arrived (camera lost, file paused): keep sinks fed with the held/faded output."""
        src = self.source.status
        if src.state in ("running", "starting") and self.stats.frames_in == 0:
            return  # still opening: nothing to show yet
        output, state = self._held_output(time.monotonic(), "source-lost")
        if src.state not in ("running",):
            state = "source-lost"
        self._emit(output, None, None, None, None, False, state, time.monotonic(), {})

    def _emit(self, output, crop_out, driving, box, landmarks, face_found, state, captured_at, ms,
              media_time: float | None = None) -> None:
        cfg = self.config
        if cfg.output_size is not None:
            output = letterbox(output, *cfg.output_size)
        t = time.perf_counter()
        for sink in list(self.sinks):
            try:
                sink.write(output, driving)
            except Exception as exc:  # noqa: BLE001 - a failed sink must not end the call
                text = str(exc) if isinstance(exc, ReenactError) else f"{sink.name} failed: {type(exc).__name__}: {exc}"
                log.error("%s disabled: %s", sink.name, text)
                self.stats.message(text)
                self.stats.errors += 1
                self.sinks.remove(sink)
                try:
                    sink.close()
                except Exception:  # noqa: BLE001
                    log.debug("closing failed sink", exc_info=True)
        ms["sinks"] = (time.perf_counter() - t) * 1000.0
        now = time.monotonic()
        latency = (now - captured_at) * 1000.0 if driving is not None else None
        if driving is not None:
            ms["total"] = sum(v for k, v in ms.items() if k != "wait")
        self.stats.add(ms, latency)
        self.stats.mark_output()
        self.stats.state = state
        pf = PipelineFrame(
            index=self._index,
            output=output,
            crop_output=crop_out,
            driving=driving,
            box=box,
            landmarks=landmarks,
            face_found=face_found,
            state=state,
            captured_at=captured_at,
            latency_ms=latency if latency is not None else 0.0,
            stage_ms=ms,
            stats=self.stats.snapshot(),
            media_time=media_time,
        )
        self._index += 1
        with self._out_cond:
            self._latest = pf
            self._out_cond.notify_all()
        if self.on_frame is not None:
            try:
                self.on_frame(pf)
            except Exception:  # noqa: BLE001 - a consumer bug must not stop the pipeline
                log.exception("on_frame callback failed")
