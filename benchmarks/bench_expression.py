"""What expression retargeting costs per frame: the app's session with retargeting off and on, interleaved.

    python -m benchmarks.bench_expression [--engine onnxruntime-cpu] [--frames 60] [--threads 2]

In the live app the tracker already runs the face mesh on every frame (the overlay uses it), so the
retargeting's own cost is the keypoint edit and the lid warp: timed as `session` (keypoints + animate +
lid warp). `reenact animate` runs the face mesh only for retargeting: timed separately as `face mesh`.
Both variants run frame by frame in turn on the same tracked crops, so machine load hits them alike.
Prints a table and writes benchmarks/results/expression-speed.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from reenact_app.benchmarking import hardware
from reenact_app.drive import avatar_landmarks, make_croppers
from reenact_app.engines.select import EngineOptions, create_engine
from reenact_app.expression import ExpressionSettings
from reenact_app.images import load_avatar_image
from reenact_app.session import AnimationSession
from reenact_common.paths import assets_dir
from reenact_common.scripts import run_script, write_report
from reenact_common.video_io import iter_frames, probe_video

REPO = Path(__file__).resolve().parent.parent
SHARED_CLIP = REPO.parent / "shared/data/clips/KwaiVGI+LivePortrait/assets/examples/driving/d0.mp4"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--driving", default=str(SHARED_CLIP) if SHARED_CLIP.is_file() else None,
                        help="driving video (default: a shared talking-head clip with blinks and an open mouth)")
    parser.add_argument("--avatar", default=str(assets_dir() / "avatars" / "monalisa.jpg"))
    parser.add_argument("--engine", default="onnxruntime-cpu")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/expression-speed.json"))
    args = parser.parse_args()
    if args.driving is None:
        parser.error("--driving is needed (the shared clips are not next to this checkout)")

    engine = create_engine(None, args.engine, options=EngineOptions(threads=args.threads, runtime_fallback=False))
    size = engine.image_size
    croppers = make_croppers(True, size, landmarks=True)
    fps = probe_video(args.driving).fps
    drivers = [croppers.frame(f, i / fps) for i, f in enumerate(iter_frames(args.driving, args.frames))]
    mesh_ms = []
    for i, f in enumerate(iter_frames(args.driving, min(args.frames, 30))):  # the mesh's own cost, per frame
        t0 = time.perf_counter()
        croppers.frame(f, (len(drivers) + i) / fps)
        t1 = time.perf_counter()
        mesh_ms.append((t1 - t0) * 1000.0)
    croppers.close()
    plain_crop = make_croppers(True, size, landmarks=False)
    crop_ms = []
    for i, f in enumerate(iter_frames(args.driving, min(args.frames, 30))):
        t0 = time.perf_counter()
        plain_crop.frame(f, i / fps)
        crop_ms.append((time.perf_counter() - t0) * 1000.0)
    plain_crop.close()

    avatar = croppers.avatar(load_avatar_image(args.avatar))
    landmarks = avatar_landmarks(avatar)
    sessions = {"off": AnimationSession(engine, expression=ExpressionSettings(strength=0.0)),
                "on": AnimationSession(engine, expression=ExpressionSettings())}
    for s in sessions.values():
        s.set_avatar(avatar, landmarks)
        s.animate(drivers[0].crop, drivers[0].landmarks)  # calibrate + warm up
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for d in drivers[1:]:
        for name, s in sessions.items():
            t0 = time.perf_counter()
            s.animate(d.crop, d.landmarks)
            times[name].append((time.perf_counter() - t0) * 1000.0)
    engine.close()

    med = {k: statistics.median(v) for k, v in times.items()}
    crop_med, mesh_med = statistics.median(crop_ms), statistics.median(mesh_ms)
    rows = [
        ("session, retargeting off", med["off"]),
        ("session, retargeting on", med["on"]),
        ("tracker crop without mesh", crop_med),
        ("tracker crop with mesh", mesh_med),
    ]
    print(f"{engine.describe()}, {len(drivers) - 1} frames, {args.threads} threads, {hardware()['cpu']}")
    print("| stage | median ms per frame |\n|---|---|")
    for name, ms in rows:
        print(f"| {name} | {ms:.2f} |")
    print(f"retargeting in the live app (mesh already run): {med['on'] / med['off']:.3f}x the session; "
          f"reenact animate adds the mesh: {mesh_med - crop_med:+.1f} ms per frame")
    result = {"engine": engine.describe(), "threads": args.threads, "frames": len(drivers) - 1,
              "hardware": hardware(), "median_ms": dict(rows), "session_ratio_on_off": med["on"] / med["off"],
              "mesh_extra_ms": mesh_med - crop_med}
    write_report(args.out, result, indent=2)
    return 0


if __name__ == "__main__":
    run_script(main)
