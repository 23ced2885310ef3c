"""Pack prepared training data small enough to carry to a GPU machine, and unpack it there.

Why: a prepared dataset is PNG frame folders plus float32 landmarks (2.2 GB for the 96 shared training
clips); a rented GPU machine often takes only tens of MB. Frames travel as H.264 (libx264 through imageio-ffmpeg,
a project dependency; OpenCV's MPEG-4 encoder, larger and lossier, only if that is missing),
landmarks as 1/16-pixel integers, delta-coded over time and LZMA-compressed (0.03 px worst-case error).
Unpacking writes the ordinary prepared layout back (PNG folders, landmarks/<clip>.npz, manifest.json), so the
trainer reads it unchanged.

    python -m training.transport pack --data DATA --out bundle --frame-step 2
    python -m training.transport unpack --bundle bundle --out DATA --workers 16
    python -m training.transport slim --state RUN/checkpoints/last.pt --out last-bf16.pt.gz   # and back
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import lzma
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from reenact_common.errors import MediaError
from training.dataset import scan_clips
from training.media import read_video_frames

log = logging.getLogger(__name__)

LANDMARK_SCALE = 16  # landmark unit in the bundle: 1/16 pixel


def encode_video(frames: list[np.ndarray], path: Path, crf: int, fps: float = 25.0) -> None:
    """RGB uint8 frames -> mp4: H.264 4:4:4 at `crf` (imageio-ffmpeg), else OpenCV's mp4v (the app's writer)."""
    from reenact_common.video_io import VideoWriter

    h, w = frames[0].shape[:2]
    with VideoWriter(path, fps, (w, h), crf=crf, preset="slow", pix_fmt="yuv444p") as writer:
        for frame in frames:
            writer.write(frame)


def encode_landmarks(landmarks: np.ndarray, found: np.ndarray) -> bytes:
    """(N, L, 2) float pixels + (N,) found -> compact bytes (see decode_landmarks)."""
    q = np.round(landmarks.astype(np.float64) * LANDMARK_SCALE).astype(np.int32)
    delta = np.diff(q, axis=0, prepend=np.zeros_like(q[:1]))
    if np.abs(delta).max(initial=0) >= 2**15:
        raise MediaError("landmarks out of range for the bundle format (|step| >= 2048 px)")
    buffer = io.BytesIO()
    np.savez(buffer, delta=delta.astype(np.int16), found=found.astype(bool))
    return lzma.compress(buffer.getvalue(), preset=9)


def decode_landmarks(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    with np.load(io.BytesIO(lzma.decompress(blob)), allow_pickle=False) as data:
        q = np.cumsum(data["delta"].astype(np.int32), axis=0)
        return (q / LANDMARK_SCALE).astype(np.float32), data["found"].astype(bool)


def pack(data: Path, out: Path, splits: tuple[str, ...] = ("train",), frame_step: int = 1, crf: int = 20) -> dict:
    """Bundle `splits` of a prepared dataset into `out`; returns {clips, frames, bytes}."""
    from tqdm import tqdm

    from training.dataset import load_frames

    if frame_step < 1:
        raise ValueError("frame_step must be >= 1")
    out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((data / "manifest.json").read_text()) if (data / "manifest.json").is_file() else {}
    identities = {c["id"]: c.get("identity", c["id"]) for c in manifest.get("clips", [])}
    entries, total_frames = [], 0
    for split in splits:
        (out / split).mkdir(exist_ok=True)
        for clip in tqdm(scan_clips(data, split), desc=f"pack {split}", unit="clip"):
            keep = list(range(0, clip.num_frames, frame_step))
            encode_video(load_frames(clip, keep), out / split / f"{clip.id}.mp4", crf)
            if clip.landmarks is not None:
                (out / "landmarks").mkdir(exist_ok=True)
                (out / "landmarks" / f"{clip.id}.lmz").write_bytes(
                    encode_landmarks(clip.landmarks[keep], clip.found[keep]))
            entries.append({"id": clip.id, "split": split, "num_frames": len(keep),
                            "identity": identities.get(clip.id, clip.id)})  # cross-identity pairs need it
            total_frames += len(keep)
    bundle = {"size": manifest.get("size", 0), "frame_step": frame_step, "crf": crf, "clips": entries}
    (out / "bundle.json").write_text(json.dumps(bundle, indent=1))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"clips": len(entries), "frames": total_frames, "bytes": size}


def _unpack_clip(args: tuple[Path, Path, dict]) -> int:
    import cv2

    bundle, out, entry = args
    frames = read_video_frames(bundle / entry["split"] / f"{entry['id']}.mp4")
    if len(frames) != entry["num_frames"]:
        raise MediaError(f"{entry['id']}: decoded {len(frames)} frames, bundle says {entry['num_frames']}")
    folder = out / entry["split"] / entry["id"]
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    lm_file = bundle / "landmarks" / f"{entry['id']}.lmz"
    if lm_file.is_file():
        landmarks, found = decode_landmarks(lm_file.read_bytes())
        np.savez(out / "landmarks" / f"{entry['id']}.npz", landmarks=landmarks, found=found)
    return len(frames)


def unpack(bundle: Path, out: Path, workers: int = 4) -> dict:
    """Write the prepared layout (frame folders, landmarks, manifest.json) of a bundle into `out`."""
    meta = json.loads((bundle / "bundle.json").read_text())
    (out / "landmarks").mkdir(parents=True, exist_ok=True)
    jobs = [(bundle, out, entry) for entry in meta["clips"]]
    with ProcessPoolExecutor(max(1, workers)) as pool:
        frames = sum(pool.map(_unpack_clip, jobs))
    (out / "manifest.json").write_text(json.dumps({"size": meta["size"], "clips": meta["clips"]}, indent=1))
    return {"clips": len(jobs), "frames": frames}


def slim_training_state(state_path: Path, out: Path) -> int:
    """A trainer `last.pt` with Adam's moments in bf16, gzipped: 25 -> 14 MB for paper-rt, under a 16 MiB
    transfer limit. `gunzip -c OUT > RUN/checkpoints/last.pt` and `--resume` restores it (the optimizer casts
    its state back to the parameters' fp32); the weights themselves stay fp32. Returns the bytes written."""
    import gzip

    import torch

    state = torch.load(str(state_path), map_location="cpu", weights_only=True)
    for key in ("optimizer", "optimizer_discriminator"):
        for moments in state.get(key, {}).get("state", {}).values():
            for name, value in moments.items():
                if torch.is_tensor(value) and value.is_floating_point() and value.dim() > 0:
                    moments[name] = value.to(torch.bfloat16)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(out, "wb", compresslevel=6) as handle:
        handle.write(buffer.getvalue())
    return out.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.transport", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="prepared data -> compact bundle")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--splits", nargs="+", default=["train"])
    p.add_argument("--frame-step", type=int, default=1, help="keep every Nth frame")
    p.add_argument("--crf", type=int, default=20, help="H.264 quality (lower: better, larger)")
    u = sub.add_parser("unpack", help="bundle -> prepared data")
    u.add_argument("--bundle", type=Path, required=True)
    u.add_argument("--out", type=Path, required=True)
    u.add_argument("--workers", type=int, default=4)
    t = sub.add_parser("slim", help="trainer last.pt -> bf16-moment, gzipped copy (fits a 16 MiB transfer)")
    t.add_argument("--state", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "pack":
        result = pack(args.data, args.out, tuple(args.splits), args.frame_step, args.crf)
    elif args.command == "slim":
        result = {"bytes": slim_training_state(args.state, args.out)}
    else:
        result = unpack(args.bundle, args.out, args.workers)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
