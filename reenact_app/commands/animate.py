"""`reenact animate`: animate an avatar picture with a driving video, offline, into an mp4.

The per-frame loop is `reenact_app.drive` (shared with the cross-identity evaluation); encoding runs
in ffmpeg's own process. Stage times: decode and crop are summed in the worker thread, so with the
overlap they may add up to more than the wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time

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
    p.add_argument("--expression", type=float, default=1.0, metavar="STRENGTH",
                   help="how strongly the driver's mouth and eye openness carry over to the avatar "
                   "(0: head and model motion only, 1: as the driver (default), up to 3: exaggerated); "
                   "needs face-tracker crops")
    p.add_argument("--crop", action=argparse.BooleanOptionalAction, default=True,
                   help="crop faces with the face tracker (default); --no-crop uses the centre square")
    p.add_argument("--size", type=int, help="model image size (default: the checkpoint's; must match it)")
    p.add_argument("--max-frames", type=int, help="stop after this many driving frames")
    p.add_argument("--full-frame", action="store_true",
                   help="write the whole avatar picture, animated at its own resolution (the model's crop is "
                   "256 px; where the avatar is visible its own pixels are warped), instead of the model's crop")
    p.add_argument("--max-side", type=int, default=1280, metavar="PX",
                   help="with --full-frame: cap the picture's long side at this many pixels (default 1280)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for inference (0: all available)")
    p.add_argument("--pipelined", action=argparse.BooleanOptionalAction, default=None,
                   help="two stages in two threads: decode, crop and keypoints of the next frame beside the "
                   "model's current one (the same frames; default: off, it measured no faster on 2 cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import cv2
    from tqdm import tqdm

    from models import load_checkpoint
    from reenact_app.benchmarking import peak_rss_mb
    from reenact_app.engines.select import EngineOptions, create_engine
    from reenact_common.errors import ConfigError
    from reenact_app.drive import DriveConfig, StageTimes, avatar_landmarks, drive, make_croppers
    from reenact_app.expression import ExpressionSettings
    from reenact_app.session import AnimationSession, MotionSettings
    from reenact_app.images import load_avatar_image
    from reenact_common.video_io import VideoWriter, check_writable, iter_frames, probe_video

    check_writable(args.output)  # before any slow work
    avatar = load_avatar_image(args.avatar)
    info = probe_video(args.driving)
    model = load_checkpoint(args.checkpoint, args.config)
    size = model.config.image_size
    if args.size and args.size != size:
        raise ConfigError(f"--size {args.size} does not match the checkpoint's image size {size}; omit --size")
    loop = DriveConfig() if args.pipelined is None else DriveConfig.measured(args.pipelined)
    engine = create_engine(model, args.engine, options=EngineOptions(threads=args.threads,
                                                                      keypoint_threads=loop.keypoint_threads))
    del model  # the engine (and its fallbacks) hold what they need
    expression = ExpressionSettings(strength=args.expression)
    croppers = make_croppers(args.crop, size, landmarks=expression.active)
    log.info("engine %s, %s crops, driving %s (%d frames at %.2f fps)", engine.describe(), croppers.kind,
             info.path, info.frame_count, info.fps)

    full_frame = _full_frame(args, engine, avatar, size, croppers.kind == "face tracker")
    if full_frame is not None:
        engine, compositor = full_frame
        loop = dataclasses.replace(loop, finish_crop=False)  # the expression is drawn on the full picture
    session = AnimationSession(engine, MotionSettings(relative=args.relative, adapt_scale=args.adapt_scale),
                               expression)
    avatar_crop = croppers.avatar(avatar)
    session.set_avatar(avatar_crop, avatar_landmarks(avatar_crop) if expression.active and args.crop else None)
    times = StageTimes()
    total = min(info.frame_count, args.max_frames) if args.max_frames and info.frame_count else (
        args.max_frames or info.frame_count or None)
    out_size = (compositor.image.shape[1], compositor.image.shape[0]) if full_frame else (size, size)
    start = time.perf_counter()
    driven = None
    try:
        with VideoWriter(args.output, info.fps, out_size) as writer:
            driven = drive(session, croppers, iter_frames(args.driving, args.max_frames), info.fps, times, loop)
            progress = tqdm(total=total, unit="frame", disable=args.no_progress, desc="animate")
            noticed = False
            for frame in driven:
                t0 = time.perf_counter()
                if full_frame:  # the expression's picture work on the full picture the crop went into
                    writer.write(frame.prepared.finish(compositor.compose(engine.last),
                                                       cv2.invertAffineTransform(compositor.matrix)))
                else:
                    writer.write(frame.output)
                times.encode += time.perf_counter() - t0
                progress.update(1)
                if engine.notice and not noticed:
                    progress.write(f"notice: {engine.notice}")
                    noticed = True
            progress.close()
    finally:
        if driven is not None:
            driven.close()  # stops the decode/crop worker before the tracker closes
        croppers.close()
        engine.close()
    wall = time.perf_counter() - start
    log.info(times.summary(wall))
    print(f"wrote {args.output} ({writer.codec}, {times.frames} frames, {out_size[0]}x{out_size[1]}, {info.fps:.2f} fps); "
          f"{times.summary(wall)}; peak RSS {peak_rss_mb():.0f} MB")
    return 0


def _full_frame(args: argparse.Namespace, engine, avatar, size: int, tracked: bool):
    """--full-frame: (the engine wrapped to keep each frame's motion, the compositor), else None."""
    if not args.full_frame:
        return None
    from reenact_app.full_resolution import MotionTap, full_frame_compositor

    if not 64 <= args.max_side <= 8192:
        from reenact_common.errors import ConfigError

        raise ConfigError(f"--max-side must be 64..8192 pixels, got {args.max_side}")
    compositor = full_frame_compositor(avatar, size, tracked, args.max_side)
    log.info("full frame: %dx%d, face box %.0f px", compositor.image.shape[1], compositor.image.shape[0],
             compositor.box.size)
    return MotionTap(engine), compositor
