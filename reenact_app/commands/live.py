"""`reenact live`: the headless live pipeline (camera or video -> avatar -> virtual camera / mp4)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import time

from reenact_app.commands import add_model_arguments

log = logging.getLogger(__name__)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        if w <= 0 or h <= 0 or w % 2 or h % 2:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an even WIDTHxHEIGHT such as 1280x720, got {text!r}") from None
    return w, h



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "live",
        help="run the live pipeline headless (camera or video driving an avatar)",
        description="Drives an avatar picture with a webcam or a video, optionally feeding a virtual "
        "camera and recording an mp4; prints per-stage timings and fps at the end.",
    )
    p.add_argument("--driving", required=True, help="camera index (0, 1...), a video file or an image folder")
    p.add_argument("--avatar", required=True, help="avatar picture (JPEG/PNG)")
    add_model_arguments(p, engine=True)
    p.add_argument("--virtual-camera", action="store_true", help="send the output to a virtual camera")
    p.add_argument("--vcam-size", type=_size, default=(1280, 720), help="virtual camera size (default 1280x720)")
    p.add_argument("--vcam-device", help="virtual camera device, e.g. /dev/video10")
    p.add_argument("--record", metavar="OUT.mp4", help="record the output to an mp4")
    p.add_argument("--side-by-side", action="store_true", help="record the driving view next to the output")
    p.add_argument("--frames", type=int, help="stop after N output frames")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--loop", action="store_true", help="loop a driving video")
    p.add_argument("--fast", action="store_true", help="video driving: every frame, as fast as possible (no pacing)")
    p.add_argument("--camera-timeout", type=float, default=10.0, help="give up if the camera delivers no frame in this many seconds (default 10)")
    p.add_argument("--camera-size", type=_size, default=(640, 480), help="requested camera resolution")
    p.add_argument("--absolute", action="store_true", help="absolute keypoints instead of relative motion")
    p.add_argument("--no-adapt-scale", action="store_true", help="don't scale motion by face-size ratio")
    p.add_argument("--expression", type=float, default=1.0, metavar="STRENGTH",
                   help="how strongly mouth and eye openness carry over (0: off, 1: as the driver (default), "
                   "up to 3)")
    p.add_argument("--no-paste-back", action="store_true", help="output the animated crop only")
    p.add_argument("--no-full-resolution", action="store_true",
                   help="paste the model's 256 px crop back upscaled instead of warping the avatar picture at its "
                   "own resolution (cheaper on very large avatars, softer)")
    p.add_argument("--no-smoothing", action="store_true", help="disable crop and keypoint smoothing")
    p.add_argument("--margin", type=float, help="crop margin around the face (default 0.45)")
    p.add_argument("--align-roll", action="store_true", help="level the eye line in the driving crop")
    p.add_argument("--mirror", action="store_true", help="mirror the driving frame")
    p.add_argument("--stats-json", metavar="PATH", help="write the timing statistics as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reenact_app.capture import CameraSource, list_cameras, open_source
    from reenact_app.engines.select import create_engine
    from reenact_common.errors import CameraError, VirtualCameraError
    from reenact_app.filters import OneEuroConfig
    from reenact_app.expression import ExpressionSettings
    from reenact_app.pipeline import LivePipeline, PipelineConfig
    from reenact_app.session import MotionSettings
    from reenact_app.sinks import Recorder, RecorderConfig, VirtualCamera, VirtualCameraConfig
    from reenact_app.tracking import TrackerConfig
    from reenact_app.images import load_avatar_image
    from reenact_common.video_io import check_writable

    avatar = load_avatar_image(args.avatar)
    if args.record:
        check_writable(args.record)  # fail before loading the model
    if args.stats_json:
        check_writable(args.stats_json, suffix=None, create_folder=True)
    cw, ch = args.camera_size
    source = open_source(args.driving, loop=args.loop, realtime=not args.fast, width=cw, height=ch)
    tracker = TrackerConfig(align_roll=args.align_roll)
    if args.margin is not None:
        tracker.margin = args.margin
    config = PipelineConfig(
        tracker=tracker,
        motion=MotionSettings(relative=not args.absolute, adapt_scale=not args.no_adapt_scale),
        expression=ExpressionSettings(strength=args.expression),
        paste_back=not args.no_paste_back,
        full_resolution=not args.no_full_resolution,
        mirror=args.mirror,
        max_frames=args.frames,
    )
    if args.no_smoothing:
        config.tracker.smoothing = OneEuroConfig(enabled=False)
        config.keypoint_smoothing = OneEuroConfig(enabled=False)

    engine = create_engine(args.checkpoint, args.engine, args.config)
    print(f"engine: {engine.describe()}")
    pipe = LivePipeline(source, engine, None, config)
    av = pipe.set_avatar(avatar)
    if av.message:
        print(f"warning: {av.message}")

    fps = source.fps or 25.0
    recorder = None
    if args.record:
        # --fast (lockstep, as fast as inference goes): every frame once; else frames keep their place in time
        recorder = Recorder(RecorderConfig(args.record, fps=fps, side_by_side=args.side_by_side,
                                           block_when_full=args.fast, realtime=not args.fast))
        pipe.add_sink(recorder)
    vcam = None
    if args.virtual_camera:
        w, h = args.vcam_size
        vcam = VirtualCamera(VirtualCameraConfig(w, h, fps, device=args.vcam_device, steady=True))
        try:
            pipe.add_sink(vcam)
            print(f"virtual camera: {vcam.device} ({w}x{h})")
        except VirtualCameraError as exc:
            print(f"warning: {exc}")
            vcam = None

    stop = {"flag": False}
    old = signal.signal(signal.SIGINT, lambda *a: stop.__setitem__("flag", True))
    start = time.monotonic()
    pipe.start()
    last_status = 0.0
    notice = None
    try:
        while pipe.running and not stop["flag"]:
            if engine.notice and engine.notice != notice:  # runtime fallback (e.g. CUDA out of memory)
                notice = engine.notice
                print(f"notice: engine fallback: {notice}")
            if args.frames is not None and pipe.stats.frames_out >= args.frames:
                break
            if args.duration is not None and time.monotonic() - start >= args.duration:
                break
            pipe.wait(frames=args.frames, timeout=0.2)
            if isinstance(source, CameraSource) and not source.status.ok:
                if source.frames_captured == 0 and time.monotonic() - start > args.camera_timeout:
                    cams = ", ".join(f"{c.index} ({c.name})" for c in list_cameras()) or "none found"
                    raise CameraError(
                        f"{source.status.message}. Cameras on this machine: {cams}. "
                        "Pick another index, close the app using the camera, or drive with a video file."
                    )
                if time.monotonic() - last_status > 5:
                    print(f"camera: {source.status.message}")
                    last_status = time.monotonic()
    finally:
        signal.signal(signal.SIGINT, old)
        pipe.stop()
        engine.close()

    print(pipe.stats.summary())
    if engine.notice and engine.notice != notice:
        print(f"notice: engine fallback: {engine.notice}")
    for msg in pipe.stats.snapshot()["messages"]:
        print(f"note: {msg}")
    if recorder is not None:
        if recorder.error:
            print(f"recording: {recorder.error}")
        else:
            print(f"recorded {recorder.frames_written} frames to {args.record}")
    if args.stats_json:
        with open(args.stats_json, "w") as f:
            json.dump({"totals_ms": pipe.stats.totals(), "snapshot": pipe.stats.snapshot()}, f, indent=2)
    return 0
