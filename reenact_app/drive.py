"""Driving an avatar with a video, offline: the loop `reenact animate` and the cross-identity
evaluation share, so what is measured is what users get.

Per frame: decode -> face crop (tracker, or centre crop), both in a background thread that overlaps
inference -> keypoints -> relative motion -> animate. The avatar is encoded once by the session.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from reenact_app.session import AnimationSession

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


@dataclass
class StageTimes:
    """Wall time per stage, summed over frames (seconds)."""

    decode: float = 0.0
    crop: float = 0.0
    model: float = 0.0
    encode: float = 0.0
    frames: int = 0

    def summary(self, wall: float) -> str:
        n = max(1, self.frames)
        per = {k: 1000 * getattr(self, k) / n for k in ("decode", "crop", "model", "encode")}
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


@dataclass
class DrivenFrame:
    index: int
    driver: DriverCrop
    output: np.ndarray  # uint8 RGB at model size


def drive(session: AnimationSession, croppers: Croppers, frames: Iterable[np.ndarray], fps: float,
          times: StageTimes | None = None) -> Iterator[DrivenFrame]:
    """Animate the session's avatar with `frames`; decode and crop overlap inference. Closing the
    generator stops the decode/crop worker (call it before closing the croppers)."""
    times = times if times is not None else StageTimes()
    crops = prefetch(decode_and_crop(frames, croppers, fps, times))
    try:
        for index, driver in crops:
            t0 = time.perf_counter()
            output = session.animate(driver.crop, landmarks=driver.landmarks)
            times.model += time.perf_counter() - t0
            times.frames += 1
            yield DrivenFrame(index, driver, output)
    finally:
        crops.close()
