"""`reenact animate`: animate an avatar picture with a driving video, offline, into an mp4.

Per frame: decode -> face crop (tracker, or centre crop), both in a background thread that overlaps
inference -> keypoints -> relative motion -> animate -> encode (ffmpeg runs in its own process).
The avatar is encoded once. Stage times: decode and crop are summed in the worker thread, so with
the overlap they may add up to more than the wall time.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from reenact_app.commands import add_model_arguments

log = logging.getLogger(__name__)



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "animate",
        help="animate an avatar image with a driving video into an mp4",
        description="Offline reenactment: the avatar image follows the head and face motion of the driving "
        "video. Output: an audio-less mp4 at the driving video's fps, at the model's size.",
    )
    p.add_argument("--avatar", required=True, help="avatar image (JPEG/PNG)")
    p.add_argument("--driving", required=True, help="driving video")
    p.add_argument("-o", "--output", required=True, help="output .mp4")
    add_model_arguments(p, engine=True)
    motion = p.add_mutually_exclusive_group()
    motion.add_argument("--relative", dest="relative", action="store_true", default=True,
                        help="transfer motion relative to the first driving frame (default)")
    motion.add_argument("--absolute", dest="relative", action="store_false",
                        help="use the driving keypoints as they are")
    p.add_argument("--adapt-scale", action="store_true", help="scale motion by the avatar/driver face-size ratio")
    p.add_argument("--crop", action=argparse.BooleanOptionalAction, default=True,
                   help="crop faces with the face tracker (default); --no-crop uses the centre square")
    p.add_argument("--size", type=int, help="model image size (default: the checkpoint's; must match it)")
    p.add_argument("--max-frames", type=int, help="stop after this many driving frames")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for inference (0: all available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# -- cropping: one place to switch between the tracker and a centre crop ------------------------------
@dataclass
class Croppers:
    avatar: Callable  # (image) -> crop
    frame: Callable  # (frame, timestamp) -> crop
    kind: str
    close: Callable = field(default=lambda: None)


def make_croppers(crop: bool, size: int) -> Croppers:
    """Face-tracker crops when asked for and importable, else centre crops (logged)."""
    from reenact_app.video_io import centre_crop

    centre = Croppers(lambda image: centre_crop(image, size), lambda frame, t: centre_crop(frame, size), "centre")
    if not crop:
        return centre
    try:
        from reenact_app.tracking import FaceTracker, TrackerConfig, prepare_avatar
    except Exception as exc:  # tracker missing or mediapipe broken: still produce a video
        log.warning("face tracker unavailable (%s): using centre crops", exc)
        return centre
    tracker = FaceTracker(TrackerConfig(crop_size=size, use_mesh=False))

    def frame_crop(frame, timestamp):
        result = tracker.track(frame, timestamp=timestamp)
        return result.crop if result.crop is not None else centre_crop(frame, size)

    return Croppers(lambda image: prepare_avatar(image, size).crop, frame_crop, "face tracker", tracker.close)


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


def _prefetch(items, depth: int = 8):
    """Run `items` (decode + crop) in a background thread so it overlaps inference: OpenCV and
    mediapipe release the GIL. Yields what the iterator yields; re-raises its exceptions here."""
    import queue
    import threading

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


def _decode_and_crop(frames, croppers: "Croppers", fps: float, times: "StageTimes"):
    """(index, crop) per driving frame; decode and crop times go to `times` (summed in the worker)."""
    t0 = time.perf_counter()
    for index, frame in enumerate(frames):
        t1 = time.perf_counter()
        crop = croppers.frame(frame, index / fps)
        t2 = time.perf_counter()
        times.decode += t1 - t0
        times.crop += t2 - t1
        yield index, crop
        t0 = time.perf_counter()


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from models import load_checkpoint
    from reenact_app.engines.benchmark import peak_rss_mb
    from reenact_app.engines.select import EngineOptions, create_engine
    from reenact_app.errors import ConfigError
    from reenact_app.session import AnimationSession, MotionSettings
    from reenact_app.images import load_avatar_image
    from reenact_app.video_io import VideoWriter, check_writable, iter_frames, probe_video

    check_writable(args.output)  # before any slow work
    avatar = load_avatar_image(args.avatar)
    info = probe_video(args.driving)
    model = load_checkpoint(args.checkpoint, args.config)
    size = model.config.image_size
    if args.size and args.size != size:
        raise ConfigError(f"--size {args.size} does not match the checkpoint's image size {size}; omit --size")
    engine = create_engine(model, args.engine, options=EngineOptions(threads=args.threads))
    del model  # the engine (and its fallbacks) hold what they need
    croppers = make_croppers(args.crop, size)
    log.info("engine %s, %s crops, driving %s (%d frames at %.2f fps)", engine.describe(), croppers.kind,
             info.path, info.frame_count, info.fps)

    session = AnimationSession(engine, MotionSettings(relative=args.relative, adapt_scale=args.adapt_scale))
    session.set_avatar(croppers.avatar(avatar))
    times = StageTimes()
    total = min(info.frame_count, args.max_frames) if args.max_frames and info.frame_count else (
        args.max_frames or info.frame_count or None)
    start = time.perf_counter()
    crops = None
    try:
        with VideoWriter(args.output, info.fps, (size, size)) as writer:
            crops = _prefetch(_decode_and_crop(iter_frames(args.driving, args.max_frames), croppers, info.fps, times))
            progress = tqdm(total=total, unit="frame", disable=args.no_progress, desc="animate")
            noticed = False
            for _index, crop in crops:
                t2 = time.perf_counter()
                animated = session.animate(crop)
                t3 = time.perf_counter()
                writer.write(animated)
                t4 = time.perf_counter()
                times.model += t3 - t2
                times.encode += t4 - t3
                times.frames += 1
                progress.update(1)
                if engine.notice and not noticed:
                    progress.write(f"notice: {engine.notice}")
                    noticed = True
            progress.close()
    finally:
        if crops is not None:
            crops.close()  # stops the decode/crop worker before the tracker closes
        croppers.close()
        engine.close()
    wall = time.perf_counter() - start
    log.info(times.summary(wall))
    print(f"wrote {args.output} ({writer.codec}, {times.frames} frames, {size}x{size}, {info.fps:.2f} fps); "
          f"{times.summary(wall)}; peak RSS {peak_rss_mb():.0f} MB")
    return 0
