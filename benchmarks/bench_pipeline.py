"""Benchmark of the live pipeline on shared clips: tracker alone, smoothing (jitter and lag), whole pipeline.

    python -m benchmarks.bench_pipeline [--checkpoint C] [--engine auto] [--frames 60]

Prints tables and writes benchmarks/results/pipeline.json. Sections:
1. tracker: ms per frame (detection only, detection + face mesh) at several input resolutions;
2. crop smoothing: box jitter (RMS second difference, % of crop size) on still-speaker clips before and
   after the One Euro filter, and lag (frames) on clips with head motion, for a grid of settings;
3. keypoint smoothing: the same for driving keypoints. Until trained weights exist, the face-mesh
   landmarks in crop coordinates ([-1, 1], like the model's keypoints) stand in for them; the model's
   own keypoints (random weights unless --checkpoint) are reported too;
4. pipeline: per-stage ms, fps and end-to-end latency, as fast as possible and paced at the clip's fps.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent

from reenact_app.filters import OneEuroConfig, OneEuroFilter, jitter, lag_frames
from reenact_app.tracking import FaceTracker, TrackerConfig

SHARED = Path(os.environ.get("REENACT_SHARED", ROOT.parent / "shared")) / "data"
STILL = [
    "clips/rizkiarm+LipNet/evaluation/samples/GRID/bbaf2n.mpg",
    "clips/rizkiarm+LipNet/evaluation/samples/GRID/lbax4n.mpg",
    "clips/ali-vilab+dreamtalk/data/style_clip/video/W009_front_neutral_level1_001.mp4",
]
MOVING = [
    "clips/KwaiVGI+LivePortrait/assets/examples/driving/d0.mp4",
    "clips/tanshuai0219+EDTalk/test_data/pose_source1.mp4",
    "clips/KwaiVGI+LivePortrait/assets/examples/driving/d3.mp4",
]
RESOLUTIONS = {
    "360x288 (GRID)": "clips/rizkiarm+LipNet/evaluation/samples/GRID/bbaf2n.mpg",
    "512x512": "clips/KwaiVGI+LivePortrait/assets/examples/driving/d0.mp4",
    "1920x1080": "clips/ajay-sainy+Wav2Lip-GFPGAN/inputs/kim_7s_raw.mp4",
}
AVATAR = "stills/TMElyralab+MuseTalk/assets/demo/monalisa/monalisa.jpg"
BOX_GRID = [(0.5, 1.0), (1.0, 0.5), (1.0, 1.0), (1.5, 1.0), (2.0, 2.0)]
SIZE_GRID = [(0.3, 0.5), (1.0, 1.0)]
KP_GRID = [(0.5, 0.3), (1.0, 0.3), (1.5, 0.3), (1.0, 2.0), (1.0, 5.0), (1.5, 5.0), (3.0, 1.0)]


def read_clip(rel: str, n: int) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(SHARED / rel))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while len(frames) < n:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames, float(fps)


def bench_tracker(n: int) -> dict:
    out = {}
    for name, rel in RESOLUTIONS.items():
        frames, fps = read_clip(rel, n)
        row = {}
        for label, mesh in (("detect", False), ("detect+mesh", True)):
            with FaceTracker(TrackerConfig(use_mesh=mesh)) as tr:
                tr.track(frames[0], 0.0)  # warm-up
                ms = [tr.track(f, i / fps).ms for i, f in enumerate(frames)]
            row[label] = {"mean": float(np.mean(ms)), "median": float(np.median(ms)), "p95": float(np.percentile(ms, 95))}
        out[name] = row
    return out


def raw_tracks(rel: str, n: int) -> dict:
    """Unsmoothed boxes and, from a smoothed-box tracker, mesh landmarks in crop coordinates."""
    frames, fps = read_clip(rel, n)
    boxes, ts = [], []
    with FaceTracker(TrackerConfig(smoothing=OneEuroConfig(enabled=False), size_smoothing=OneEuroConfig(enabled=False), use_mesh=False)) as tr:
        for i, f in enumerate(frames):
            r = tr.track(f, i / fps)
            if r.raw_box is not None:
                boxes.append((r.raw_box.cx, r.raw_box.cy, r.raw_box.size))
                ts.append(i / fps)
    kps, kts = [], []
    with FaceTracker(TrackerConfig()) as tr:
        for i, f in enumerate(frames):
            r = tr.track(f, i / fps)
            if r.landmarks is not None:
                m = r.matrix
                p = r.landmarks.astype(np.float64) @ m[:, :2].T + m[:, 2]
                kps.append(p / (tr.config.crop_size / 2) - 1.0)  # [-1, 1] like the model's keypoints
                kts.append(i / fps)
    return {"boxes": np.array(boxes), "t": np.array(ts), "kp": np.array(kps), "kt": np.array(kts), "frames": frames, "fps": fps}


def filt(x: np.ndarray, t: np.ndarray, mc: float, beta: float) -> np.ndarray:
    f = OneEuroFilter(mc, beta)
    return np.array([f(v, tt) for v, tt in zip(x, t)])


def box_metrics(tracks: dict, center: tuple[float, float], size: tuple[float, float]) -> dict:
    b, t = tracks["boxes"], tracks["t"]
    ref = b[0, 2]
    c = filt(b[:, :2] / ref, t, *center) * ref
    s = filt(b[:, 2:] / ref, t, *size) * ref
    scale = b[:, 2].mean()
    return {
        "centre_raw": 100 * jitter(b[:, :2], scale),
        "centre_smoothed": 100 * jitter(c, scale),
        "size_raw": 100 * jitter(b[:, 2:], scale),
        "size_smoothed": 100 * jitter(s, scale),
        "lag_frames": lag_frames(b[:, :2], c),
        "max_trail_pct": 100 * float(np.abs(c - b[:, :2]).max() / scale),
    }


def kp_metrics(kp: np.ndarray, t: np.ndarray, mc: float, beta: float) -> dict:
    flat = kp.reshape(len(kp), -1)
    s = filt(flat, t, mc, beta)
    return {
        "raw": 100 * jitter(flat) / 2,  # % of the crop (keypoint range is 2)
        "smoothed": 100 * jitter(s) / 2,
        "lag_frames": lag_frames(flat, s),
    }


def mean_over(rows: list[dict]) -> dict:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def bench_smoothing(n: int) -> tuple[dict, dict]:
    still = {rel: raw_tracks(rel, n) for rel in STILL}
    moving = {rel: raw_tracks(rel, n) for rel in MOVING}
    box = {}
    for c in BOX_GRID:
        for s in SIZE_GRID:
            key = f"centre mc={c[0]} beta={c[1]}, size mc={s[0]} beta={s[1]}"
            box[key] = {
                "still": mean_over([box_metrics(v, c, s) for v in still.values()]),
                "moving": mean_over([box_metrics(v, c, s) for v in moving.values()]),
            }
    kp = {}
    for mc, beta in KP_GRID:
        kp[f"mc={mc} beta={beta}"] = {
            "still": mean_over([kp_metrics(v["kp"], v["kt"], mc, beta) for v in still.values()]),
            "moving": mean_over([kp_metrics(v["kp"], v["kt"], mc, beta) for v in moving.values()]),
        }
    return box, kp, still, moving


def model_kp_jitter(engine, tracks: dict, mc: float, beta: float) -> dict:
    """The model's own keypoints on the (smoothed) driving crops of a clip."""
    frames, fps = tracks["frames"], tracks["fps"]
    kps, ts = [], []
    with FaceTracker(TrackerConfig(crop_size=engine.image_size, use_mesh=False)) as tr:
        for i, f in enumerate(frames):
            r = tr.track(f, i / fps)
            if r.face_found:
                kps.append(engine.detect_keypoints(r.crop).value)
                ts.append(i / fps)
    return kp_metrics(np.array(kps), np.array(ts), mc, beta)


def bench_pipeline(engine, avatar_path: Path, n: int, realtime: bool) -> dict:
    from reenact_app.capture import VideoFileSource
    from reenact_app.pipeline import LivePipeline, PipelineConfig
    from reenact_app.sinks import FakeVirtualCameraBackend, VirtualCamera, VirtualCameraConfig
    from reenact_app.images import load_avatar_image

    src = VideoFileSource(SHARED / STILL[0], realtime=realtime, loop=True)
    vcam = VirtualCamera(VirtualCameraConfig(1280, 720, 25, backend="reenact-fake"))
    pipe = LivePipeline(src, engine, load_avatar_image(avatar_path), PipelineConfig(max_frames=n + 5), sinks=[vcam])
    pipe.start()
    pipe.wait(frames=5, timeout=120)
    pipe.stats.reset()  # drop warm-up
    t0 = time.monotonic()
    pipe.wait(frames=n, timeout=600)
    elapsed = time.monotonic() - t0
    pipe.stop()
    FakeVirtualCameraBackend.reset()
    totals = pipe.stats.totals()
    return {
        "mode": "paced at clip fps (25)" if realtime else "as fast as possible",
        "frames": pipe.stats.frames_out,
        "fps": pipe.stats.frames_out / elapsed,
        "source_frames_dropped": src.frames_dropped,
        "stage_ms": {k: v for k, v in totals.items()},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="model checkpoint (default: random-weights paper-rt)")
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--frames", type=int, default=60, help="frames per measurement")
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/pipeline.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    result: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus", "frames": args.frames}

    print("== tracker (ms per frame) ==")
    result["tracker_ms"] = tr = bench_tracker(args.frames)
    print(f"{'input':<16} {'detect':>14} {'detect+mesh':>14}   (median / p95)")
    for name, row in tr.items():
        print(f"{name:<16} {row['detect']['median']:6.1f} / {row['detect']['p95']:5.1f} {row['detect+mesh']['median']:6.1f} / {row['detect+mesh']['p95']:5.1f}")

    print("\n== crop box smoothing: jitter (% of crop, RMS 2nd difference) and lag ==")
    box, kp, still, moving = bench_smoothing(max(args.frames, 100))
    result["box_smoothing"], result["kp_smoothing_mesh_proxy"] = box, kp
    print(f"{'setting':<48} {'still centre':>16} {'still size':>16} {'moving lag':>10} {'trail%':>7}")
    for key, r in box.items():
        s, m = r["still"], r["moving"]
        print(f"{key:<48} {s['centre_raw']:6.3f} -> {s['centre_smoothed']:5.3f} {s['size_raw']:6.3f} -> {s['size_smoothed']:5.3f} {m['lag_frames']:10.2f} {m['max_trail_pct']:7.2f}")

    print("\n== keypoint smoothing (face-mesh landmarks in crop coordinates as the proxy) ==")
    print(f"{'setting':<20} {'still jitter %':>18} {'moving jitter %':>18} {'moving lag':>10}")
    for key, r in kp.items():
        s, m = r["still"], r["moving"]
        print(f"{key:<20} {s['raw']:7.3f} -> {s['smoothed']:6.3f} {m['raw']:7.3f} -> {m['smoothed']:6.3f} {m['lag_frames']:10.2f}")

    import models
    from reenact_app.engines.select import create_engine

    model = args.checkpoint or models.build_model("paper-rt")
    engine = create_engine(model, args.engine)
    result["engine"] = engine.describe()
    result["weights"] = args.checkpoint or "random (paper-rt)"
    from reenact_app.pipeline import PipelineConfig

    kpc = PipelineConfig().keypoint_smoothing
    mk = {
        "still": mean_over([model_kp_jitter(engine, v, kpc.min_cutoff, kpc.beta) for v in still.values()]),
        "moving": mean_over([model_kp_jitter(engine, v, kpc.min_cutoff, kpc.beta) for v in moving.values()]),
    }
    result["model_kp_default_smoothing"] = mk
    print(f"\nmodel keypoints ({result['weights']}), default smoothing mc={kpc.min_cutoff} beta={kpc.beta}: "
          f"still {mk['still']['raw']:.3f} -> {mk['still']['smoothed']:.3f} %, moving lag {mk['moving']['lag_frames']:.2f} frames")

    if not args.skip_pipeline:
        print(f"\n== pipeline ({engine.describe()}, GRID clip, 1280x720 fake virtual camera) ==")
        result["pipeline"] = []
        for realtime in (False, True):
            r = bench_pipeline(engine, SHARED / AVATAR, args.frames, realtime)
            result["pipeline"].append(r)
            print(f"-- {r['mode']}: {r['fps']:.2f} fps over {r['frames']} frames, source dropped {r['source_frames_dropped']}")
            print(f"{'stage':<10} {'mean':>7} {'median':>7} {'p95':>7}")
            for k, v in r["stage_ms"].items():
                print(f"{k:<10} {v['mean']:7.1f} {v['median']:7.1f} {v['p95']:7.1f}")
    engine.close()

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
