"""Driving an avatar with a video, offline: the loop `reenact animate` and the cross-identity
evaluation share, so what is measured is what users get.

Per frame: decode -> face crop (tracker, or centre crop) -> keypoints -> relative motion -> animate.
The avatar is encoded once by the session. Two ways to spread that over threads (`DriveConfig`):
- serial: decode and crop run in a background thread that overlaps inference; keypoints and animate
  run in the caller's thread, each with every core (ONNX Runtime's intra-op threads);
- pipelined: two stages, the first (decode, crop, keypoints, relative motion) in a background thread,
  the second (animate, and whatever the caller does with the frame: compose, encode) in the caller's;
  a bounded queue between them keeps the order and bounds memory. Throughput approaches 1 / the slower
  stage instead of 1 / their sum; each frame waits up to `depth` frames longer (docs/performance.md).
Both give the same frames.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from reenact_app.session import AnimationSession, PreparedFrame

log = logging.getLogger(__name__)


@dataclass
class DriverCrop:
    """One driving frame at model size, with the face-mesh landmarks of that crop when tracked."""

    crop: np.ndarray  # uint8 RGB (size, size, 3)
    landmarks: np.ndarray | None = None  # (468, 2) float32 in crop pixels, or None


# -- cropping: one place to switch between the tracker and a centre crop ------------------------------
@dataclass
class Croppers:
    avatar: Callable[[np.ndarray], np.ndarray]  # (image) -> crop
    frame: Callable[[np.ndarray, float], DriverCrop]  # (frame, timestamp) -> crop
    kind: str
    close: Callable[[], None] = field(default=lambda: None)


def make_croppers(crop: bool, size: int, landmarks: bool = False) -> Croppers:
    """Face-tracker crops when asked for and importable, else centre crops (logged). `landmarks`: run
    the face mesh on each driving crop too (expression retargeting needs it)."""
    from reenact_common.video_io import centre_crop

    centre = Croppers(lambda image: centre_crop(image, size),
                      lambda frame, t: DriverCrop(centre_crop(frame, size)), "centre")
    if not crop:
        return centre
    try:  # FaceTracker imports mediapipe when it is built, so building it is part of the check
        from reenact_app.tracking import FaceTracker, TrackerConfig, landmarks_in_crop, prepare_avatar

        tracker = FaceTracker(TrackerConfig(crop_size=size, use_mesh=landmarks))
    except Exception as exc:  # tracker missing or mediapipe broken: still produce a video
        log.warning("face tracker unavailable (%s): using centre crops", exc)
        return centre

    def frame_crop(frame: np.ndarray, timestamp: float) -> DriverCrop:
        result = tracker.track(frame, timestamp=timestamp)
        if result.crop is None:
            return DriverCrop(centre_crop(frame, size))
        return DriverCrop(result.crop, landmarks_in_crop(result))

    return Croppers(lambda image: prepare_avatar(image, size).crop, frame_crop, "face tracker", tracker.close)


def avatar_landmarks(crop: np.ndarray) -> np.ndarray | None:
    """The avatar crop's face mesh for expression retargeting; None when there is none (or no tracker)."""
    try:
        from reenact_app.tracking import mesh_landmarks
    except Exception as exc:  # mediapipe broken: animate without retargeting
        log.warning("face mesh unavailable (%s): expression retargeting off", exc)
        return None
    return mesh_landmarks(crop)


@dataclass(frozen=True)
class DriveConfig:
    """How the offline loop spreads its stages over threads (module doc). The default is serial: on a
    2-core CPU the pipelined loop measured no faster (docs/performance.md, "paper-rt end to end on 2 cores"),
    since both cores are already busy ~85% of the time and pipelining adds no cores."""

    pipelined: bool = False
    depth: int = 2  # pipelined: frames queued between the stages (serial reads 8 crops ahead)
    # The keypoint graph's intra-op threads this loop asks the engine for (EngineOptions.keypoint_threads;
    # 0: as many as the animate graph).
    keypoint_threads: int = 0
    # the expression's picture work on the model's crop; off when the caller composes the crop into a
    # bigger picture and finishes that instead (`reenact animate --full-frame`: twice was work thrown away)
    finish_crop: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.depth <= 64:
            raise ValueError(f"depth must be 1..64 frames, got {self.depth}")

    @classmethod
    def measured(cls, pipelined: bool) -> "DriveConfig":
        """Each loop with the thread settings that measured best for it: pipelined, the keypoint graph
        gets one thread (it runs beside animate, which keeps every core)."""
        return cls(pipelined=True, keypoint_threads=1) if pipelined else cls()


@dataclass
class StageTimes:
    """Wall time per stage, summed over frames (seconds), in whichever thread the stage ran."""

    decode: float = 0.0
    crop: float = 0.0
    keypoints: float = 0.0  # driving keypoints and relative motion (AnimationSession.prepare)
    animate: float = 0.0  # the model's frame and the expression warps (render_prepared)
    encode: float = 0.0
    frames: int = 0

    def summary(self, wall: float) -> str:
        n = max(1, self.frames)
        per = {k: 1000 * getattr(self, k) / n for k in ("decode", "crop", "keypoints", "animate", "encode")}
        parts = ", ".join(f"{k} {v:.1f} ms" for k, v in per.items())
        return f"{self.frames} frames in {wall:.1f} s = {self.frames / max(wall, 1e-9):.1f} fps end to end ({parts} per frame)"


def prefetch(items: Iterable, depth: int = 8) -> Iterator:
    """Run `items` (decode + crop) in a background thread so it overlaps inference: OpenCV and
    mediapipe release the GIL. Yields what the iterator yields; re-raises its exceptions here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(item)
        except BaseException as exc:  # re-raised in the consumer
            q.put(exc)
        q.put(done)

    worker = threading.Thread(target=work, name="decode-crop", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        # Consumer stopped (end, error, Ctrl-C): let the worker finish its frame before the tracker closes.
        stop.set()
        while worker.is_alive():
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                pass


def decode_and_crop(frames: Iterable[np.ndarray], croppers: Croppers, fps: float,
                    times: StageTimes) -> Iterator[tuple[int, DriverCrop]]:
    """(index, driver crop) per driving frame; decode and crop times go to `times` (summed in the worker)."""
    t0 = time.perf_counter()
    for index, frame in enumerate(frames):
        t1 = time.perf_counter()
        driver = croppers.frame(frame, index / fps)
        t2 = time.perf_counter()
        times.decode += t1 - t0
        times.crop += t2 - t1
        yield index, driver
        t0 = time.perf_counter()


def prepare_frames(crops: Iterable[tuple[int, DriverCrop]], session: AnimationSession,
                   times: StageTimes) -> Iterator[tuple[int, DriverCrop, PreparedFrame]]:
    """The pipelined loop's first stage after cropping: each crop's keypoints and relative motion."""
    for index, driver in crops:
        t0 = time.perf_counter()
        prepared = session.prepare(driver.crop, driver.landmarks)
        times.keypoints += time.perf_counter() - t0
        yield index, driver, prepared


@dataclass
class DrivenFrame:
    index: int
    driver: DriverCrop
    output: np.ndarray  # uint8 RGB at model size (the model's frame alone when DriveConfig.finish_crop is off)
    prepared: PreparedFrame  # its keypoints and expression state (PreparedFrame.finish on a composed picture)


def drive(session: AnimationSession, croppers: Croppers, frames: Iterable[np.ndarray], fps: float,
          times: StageTimes | None = None, config: DriveConfig | None = None) -> Iterator[DrivenFrame]:
    """Animate the session's avatar with `frames`, in order; the stages overlap as `config` says. A
    worker's exception is raised here. Closing the generator stops the worker (call it before closing
    the croppers)."""
    config = config or DriveConfig()
    times = times if times is not None else StageTimes()
    crops = decode_and_crop(frames, croppers, fps, times)
    if config.pipelined:
        worker = prefetch(prepare_frames(crops, session, times), depth=config.depth)
    else:
        worker = prefetch(crops)
    try:
        for item in worker:
            if config.pipelined:
                index, driver, prepared = item
            else:  # the keypoints run here, between the model's frames
                index, driver = item
                t0 = time.perf_counter()
                prepared = session.prepare(driver.crop, driver.landmarks)
                times.keypoints += time.perf_counter() - t0
            t0 = time.perf_counter()
            output = session.render_prepared(prepared, finish=config.finish_crop)
            times.animate += time.perf_counter() - t0
            times.frames += 1
            yield DrivenFrame(index, driver, output, prepared)
    finally:
        worker.close()
