"""Full-resolution output against today's upscaled 256 px paste-back: sharpness and cost.

    python -m benchmarks.bench_full_resolution [--frames 60] [--rounds 2] [--engine auto]

The avatar is a bundled painting (assets/avatars/monalisa.jpg) upscaled so that its face box is
`--crop-side` pixels (1024 by default) and cropped to a square picture around it: a large portrait, made
here, never committed. The bundled weights (paper-rt) drive it.

1. Sharpness: Laplacian variance over the face (the middle half of the crop box) of the output, as a
   fraction of the avatar's own, for full resolution and for the upscaled crop, on still frames (driver =
   reference) and moving frames (a shared talking-head clip, face-tracker crops).
2. Composite: the compositing step alone at face boxes of 256, 512 and 1024 px (interleaved).
3. Speed: the live pipeline end to end (GRID clip as fast as it goes, face tracker, 1280x720 fake virtual
   camera), full resolution off and on, interleaved over `--rounds` rounds; fps and the per-stage table.

Writes benchmarks/results/full-resolution.json (and, with --image, a side-by-side JPEG of the middle of
the face at the portrait's own pixels, one moving frame: upscaled 256 px crop | full resolution | the
avatar itself).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("REENACT_SHARED", ROOT.parent / "shared")) / "data"
PAINTING = ROOT / "assets/avatars/monalisa.jpg"
MOVING = "clips/KwaiVGI+LivePortrait/assets/examples/driving/d0.mp4"
PACED = "clips/rizkiarm+LipNet/evaluation/samples/GRID/bbaf2n.mpg"


def large_portrait(crop_side: int) -> np.ndarray:
    """The painting upscaled (bicubic) so its face box is `crop_side` px, cropped to a square around it."""
    from reenact_app.images import load_avatar_image
    from reenact_app.tracking import prepare_avatar

    painting = load_avatar_image(PAINTING)
    box = prepare_avatar(painting, 256).box
    factor = 0.97 * crop_side / box.size  # re-detected on the big picture the box varies by a few px
    big = cv2.resize(painting, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    half = int(round(box.size * factor * 0.625))  # a 1.25x square around the box, inside the picture
    cx, cy = int(box.cx * factor), int(box.cy * factor)
    h, w = big.shape[:2]
    x0, y0 = max(0, min(w - 2 * half, cx - half)), max(0, min(h - 2 * half, cy - half))
    portrait = np.ascontiguousarray(big[y0:y0 + 2 * half, x0:x0 + 2 * half])
    for _ in range(3):  # re-detected on the big picture the box differs by a few per cent: settle it
        size = prepare_avatar(portrait, 256).box.size
        if 0.95 * crop_side <= size <= crop_side:
            break
        side = round(portrait.shape[0] * 0.99 * crop_side / size)
        portrait = cv2.resize(portrait, (side, side), interpolation=cv2.INTER_AREA if side < portrait.shape[0] else cv2.INTER_CUBIC)
    return portrait


def laplacian_variance(image: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def face_region(box) -> tuple[slice, slice]:
    """The middle half of the crop box: the face itself (the crop's margin is hair and background)."""
    quarter = box.size / 4
    return (slice(int(box.cy - quarter), int(box.cy + quarter)), slice(int(box.cx - quarter), int(box.cx + quarter)))


def read_frames(rel: str, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(SHARED / rel))
    frames = []
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def bench_sharpness(engine, portrait: np.ndarray, frames: int, image_path: Path | None) -> dict:
    from reenact_app.full_resolution import FullResolutionCompositor, MotionTap
    from reenact_app.session import AnimationSession
    from reenact_app.tracking import FaceTracker, TrackerConfig, prepare_avatar

    avatar = prepare_avatar(portrait, 256)
    compositor = FullResolutionCompositor(avatar.image, avatar.box, 256)
    if compositor.image.shape != portrait.shape:
        raise SystemExit(f"the face box ({avatar.box.size:.0f} px) is over the 1024 px crop cap; lower --crop-side")
    region = face_region(avatar.box)
    own = laplacian_variance(portrait[region])
    tap = MotionTap(engine)
    session = AnimationSession(tap)
    session.set_avatar(avatar.crop)
    tracker = FaceTracker(TrackerConfig(crop_size=256))
    driving = read_frames(MOVING, frames + 1)
    crops = [tracker.track(f, i / 25.0).crop for i, f in enumerate(driving)]
    tracker.close()
    crops = [c for c in crops if c is not None]
    result: dict = {"avatar_laplacian_variance": own, "crop_box_px": round(avatar.box.size, 1),
                    "face_region_px": int(avatar.box.size / 2)}
    sample = None
    for kind, sequence in (("still", [crops[0]] * min(10, frames)), ("moving", crops[1:])):
        session.calibrate(crops[0])
        full, upscaled = [], []
        for crop in sequence:
            session.animate(crop)
            animation = tap.last
            full_frame = compositor.compose(animation)
            plain = avatar.paste_back(animation.image)
            full.append(laplacian_variance(full_frame[region]) / own)
            upscaled.append(laplacian_variance(plain[region]) / own)
            if kind == "moving" and len(full) == len(sequence) // 2:
                sample = (plain[region], full_frame[region], portrait[region])
        result[kind] = {
            "frames": len(sequence),
            "full_resolution": {"mean": float(np.mean(full)), "min": float(np.min(full))},
            "upscaled_256": {"mean": float(np.mean(upscaled)), "min": float(np.min(upscaled))},
        }
    if image_path is not None and sample is not None:
        def middle(tile: np.ndarray, side: int = 320) -> np.ndarray:  # real pixels, not resampled
            top, left = max(0, (tile.shape[0] - side) // 2), max(0, (tile.shape[1] - side) // 2)
            return tile[top:top + side, left:left + side]

        tiles = [middle(t) for t in sample]
        strip = np.concatenate(tiles, axis=1)
        cv2.imwrite(str(image_path), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
        result["image"] = image_path.relative_to(ROOT).as_posix()
    return result


def bench_composite(engine, sides: tuple[int, ...], repeats: int) -> dict:
    """The composite step alone (ms per frame, median), full resolution vs the plain paste-back,
    interleaved, for several face-box sizes; one real animated frame each."""
    from reenact_app.full_resolution import FullResolutionCompositor
    from reenact_app.tracking import prepare_avatar

    rows = {}
    for side in sides:
        portrait = large_portrait(side)
        avatar = prepare_avatar(portrait, 256)
        source = engine.encode_source(avatar.crop)
        animation = engine.animate_with_motion(source, engine.detect_keypoints(avatar.crop[:, ::-1].copy()))
        compositor = FullResolutionCompositor(avatar.image, avatar.box, 256)
        full, plain = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            compositor.compose(animation)
            t1 = time.perf_counter()
            avatar.paste_back(animation.image)
            t2 = time.perf_counter()
            full.append((t1 - t0) * 1000)
            plain.append((t2 - t1) * 1000)
        rows[str(side)] = {"box_px": round(avatar.box.size, 1), "full_resolution_ms": float(np.median(full)),
                           "upscaled_256_ms": float(np.median(plain))}
    return rows


def run_pipeline(engine, portrait: np.ndarray, frames: int, full_resolution: bool) -> dict:
    from reenact_app.capture import VideoFileSource
    from reenact_app.pipeline import LivePipeline, PipelineConfig
    from reenact_app.sinks import FakeVirtualCameraBackend, VirtualCamera, VirtualCameraConfig

    source = VideoFileSource(SHARED / PACED, realtime=False, loop=True)
    camera = VirtualCamera(VirtualCameraConfig(1280, 720, 25, backend="reenact-fake"))
    config = PipelineConfig(max_frames=frames + 5, full_resolution=full_resolution)
    pipe = LivePipeline(source, engine, portrait, config, sinks=[camera])
    pipe.start()
    pipe.wait(frames=5, timeout=120)
    pipe.stats.reset()  # drop the warm-up (and the compositor's one-off maps)
    start = time.monotonic()
    pipe.wait(frames=frames, timeout=600)
    elapsed = time.monotonic() - start
    pipe.stop()
    FakeVirtualCameraBackend.reset()
    return {"fps": pipe.stats.frames_out / elapsed, "frames": pipe.stats.frames_out,
            "stage_ms": pipe.stats.totals(), "output": list(pipe.latest.output.shape[:2]) if pipe.latest else None}


def bench_speed(engine, portrait: np.ndarray, frames: int, rounds: int) -> dict:
    runs: dict[str, list] = {"upscaled_256": [], "full_resolution": []}
    for _ in range(rounds):  # interleaved: the machine's load drifts
        for name, on in (("upscaled_256", False), ("full_resolution", True)):
            runs[name].append(run_pipeline(engine, portrait, frames, on))
    summary = {}
    for name, rows in runs.items():
        stages = {k: float(np.mean([r["stage_ms"][k]["mean"] for r in rows if k in r["stage_ms"]]))
                  for k in rows[0]["stage_ms"]}
        summary[name] = {"fps": float(np.mean([r["fps"] for r in rows])), "fps_runs": [r["fps"] for r in rows],
                         "stage_ms_mean": stages, "output": rows[0]["output"]}
    summary["fps_ratio"] = summary["full_resolution"]["fps"] / summary["upscaled_256"]["fps"]
    summary["paired_fps_ratios"] = [b["fps"] / a["fps"] for a, b in zip(runs["upscaled_256"], runs["full_resolution"])]
    summary["composite_ms_added"] = (summary["full_resolution"]["stage_ms_mean"]["composite"]
                                     - summary["upscaled_256"]["stage_ms_mean"]["composite"])
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--frames", type=int, default=60, help="frames per pipeline run and moving frames for sharpness")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved off/on pipeline rounds")
    ap.add_argument("--crop-side", type=int, default=1024, help="the avatar's face box in pixels")
    ap.add_argument("--image", help="write the side-by-side JPEG here (repo-relative)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/full-resolution.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    from reenact_app.engines.select import create_engine
    from reenact_common.paths import default_weights

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    engine = create_engine(default_weights(), args.engine)
    portrait = large_portrait(args.crop_side)
    result: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "load_average_start": os.getloadavg()[0], "engine": engine.describe(), "weights": "bundled (paper-rt)",
        "portrait": f"{PAINTING.relative_to(ROOT).as_posix()} upscaled to {portrait.shape[1]}x{portrait.shape[0]}",
        "crop_side": args.crop_side,
    }
    image = ROOT / args.image if args.image else None
    result["sharpness"] = sharp = bench_sharpness(engine, portrait, args.frames, image)
    print(f"== sharpness: Laplacian variance over the face ({sharp['face_region_px']} px), fraction of the avatar's own ==")
    print(f"{'frames':<8} {'n':>4} {'upscaled 256 (mean/min)':>26} {'full resolution (mean/min)':>28}")
    for kind in ("still", "moving"):
        r = sharp[kind]
        print(f"{kind:<8} {r['frames']:>4} {r['upscaled_256']['mean']:>15.1%} / {r['upscaled_256']['min']:>6.1%}"
              f" {r['full_resolution']['mean']:>17.1%} / {r['full_resolution']['min']:>6.1%}")
    result["composite_ms"] = comp = bench_composite(engine, (256, 512, 1024), 30)
    print("\n== composite step alone, ms per frame (median of 30, interleaved) ==")
    print(f"{'face box px':>12} {'upscaled 256':>13} {'full resolution':>16}")
    for row in comp.values():
        print(f"{row['box_px']:12.0f} {row['upscaled_256_ms']:13.1f} {row['full_resolution_ms']:16.1f}")
    result["speed"] = speed = bench_speed(engine, portrait, args.frames, args.rounds)
    print(f"\n== live pipeline, {engine.describe()}, {args.crop_side} px face box, 1280x720 fake camera ==")
    stages = list(speed["upscaled_256"]["stage_ms_mean"])
    print(f"{'':<16} {'fps':>6} " + " ".join(f"{s:>9}" for s in stages))
    for name in ("upscaled_256", "full_resolution"):
        row = speed[name]
        print(f"{name:<16} {row['fps']:6.1f} " + " ".join(f"{row['stage_ms_mean'][s]:9.1f}" for s in stages))
    print(f"fps ratio (full / upscaled): {speed['fps_ratio']:.3f} (paired {', '.join(f'{r:.3f}' for r in speed['paired_fps_ratios'])});"
          f" composite +{speed['composite_ms_added']:.1f} ms per frame")
    result["load_average_end"] = os.getloadavg()[0]
    engine.close()
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
