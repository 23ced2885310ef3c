"""Packing prepared data for a GPU machine: real frames and landmarks survive the round trip."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tests.conftest import bgr_frames
from training.dataset import scan_clips
from training.transport import LANDMARK_SCALE, decode_landmarks, encode_landmarks, pack, unpack

CLIP = "rizkiarm+LipNet/evaluation/samples/GRID/bbaf2n.mpg"  # real talking-head frames (GRID)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, clips_dir):
    """A two-clip prepared dataset from real frames, with landmark tracks like `prepare-data` writes."""
    root = tmp_path_factory.mktemp("prepared")
    frames = bgr_frames(clips_dir / CLIP, 12)
    rng = np.random.default_rng(0)
    for name, chosen in (("clip_a", frames[:12]), ("clip_b", frames[:7])):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for i, frame in enumerate(chosen):
            image = cv2.resize(frame, (128, 128), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(folder / f"{i:05d}.png"), image)
        track = 64 + np.cumsum(rng.normal(0, 1.5, (len(chosen), 478, 2)), axis=0)
        found = np.ones(len(chosen), bool)
        found[3] = False
        (root / "landmarks").mkdir(exist_ok=True)
        np.savez(root / "landmarks" / f"{name}.npz", landmarks=track.astype(np.float32), found=found)
    (root / "manifest.json").write_text(json.dumps({"size": 128, "clips": []}))
    return root


def test_landmark_codec_is_within_a_32nd_of_a_pixel():
    rng = np.random.default_rng(1)
    track = (128 + np.cumsum(rng.normal(0, 3, (40, 478, 2)), axis=0)).astype(np.float32)
    found = rng.random(40) > 0.2
    decoded, found_back = decode_landmarks(encode_landmarks(track, found))
    assert decoded.dtype == np.float32 and decoded.shape == track.shape
    assert np.abs(decoded - track).max() <= 0.5 / LANDMARK_SCALE + 1e-6
    np.testing.assert_array_equal(found_back, found)


def test_pack_unpack_round_trip_keeps_frames_and_landmarks(prepared, tmp_path):
    stats = pack(prepared, tmp_path / "bundle", frame_step=2)
    assert stats == {"clips": 2, "frames": 6 + 4, "bytes": stats["bytes"]}
    raw = sum(p.stat().st_size for p in prepared.rglob("*") if p.is_file())
    assert stats["bytes"] < raw / 2, "the bundle should be much smaller than PNG frames + float landmarks"

    out = tmp_path / "unpacked"
    assert unpack(tmp_path / "bundle", out, workers=2) == {"clips": 2, "frames": 10}
    clips = {c.id: c for c in scan_clips(out, "train")}
    originals = {c.id: c for c in scan_clips(prepared, "train")}
    assert set(clips) == {"clip_a", "clip_b"}
    for cid, clip in clips.items():
        kept = list(range(0, originals[cid].num_frames, 2))
        assert clip.num_frames == len(kept)
        assert clip.landmark_size == 128  # the manifest's crop size travels, so landmarks keep their scale
        assert np.abs(clip.landmarks - originals[cid].landmarks[kept]).max() <= 0.5 / LANDMARK_SCALE + 1e-6
        np.testing.assert_array_equal(clip.found, originals[cid].found[kept])
        for j, i in enumerate(kept):
            a = cv2.imread(str(clip.frames[j])).astype(np.float64)
            b = cv2.imread(str(originals[cid].frames[i])).astype(np.float64)
            psnr = 10 * np.log10(255**2 / max(np.mean((a - b) ** 2), 1e-9))
            assert psnr > 28, f"{cid} frame {i}: PSNR {psnr:.1f} dB after the round trip"


def test_unpack_refuses_a_truncated_video(prepared, tmp_path):
    pack(prepared, tmp_path / "bundle")
    meta = json.loads((tmp_path / "bundle" / "bundle.json").read_text())
    meta["clips"][0]["num_frames"] += 5
    (tmp_path / "bundle" / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(Exception, match="decoded"):
        unpack(tmp_path / "bundle", tmp_path / "out", workers=1)


def test_slim_training_state_resumes_with_fp32_moments(tmp_path):
    import gzip

    import torch

    from training.transport import slim_training_state

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.rand(2, 3, 16, 16)).square().mean().backward()
    optimizer.step()
    state = {"step": 7, "model": model.state_dict(), "optimizer": optimizer.state_dict()}
    torch.save(state, tmp_path / "last.pt")

    size = slim_training_state(tmp_path / "last.pt", tmp_path / "slim.pt.gz")
    assert size < (tmp_path / "last.pt").stat().st_size
    (tmp_path / "back.pt").write_bytes(gzip.decompress((tmp_path / "slim.pt.gz").read_bytes()))
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert back["step"] == 7
    for name, value in state["model"].items():  # weights untouched
        assert torch.equal(back["model"][name], value)
    fresh = torch.optim.Adam(model.parameters(), lr=1e-3)
    fresh.load_state_dict(back["optimizer"])
    for index, moments in optimizer.state_dict()["state"].items():
        restored = fresh.state_dict()["state"][index]
        assert restored["exp_avg"].dtype == torch.float32
        torch.testing.assert_close(restored["exp_avg"], moments["exp_avg"], rtol=1e-2, atol=1e-6)


def test_gpu_session_script_trains_parallel_arms_and_returns_their_files(prepared, tmp_path):
    """tools/gpu_session.sh end to end on the CPU (DEV=cpu): packed data in, two arms at once (plain and
    GAN), every file a lease would return out, within the lease's 8-file limit and without hanging."""
    import os
    import subprocess
    import tarfile
    from pathlib import Path

    import yaml

    from tests.test_training_trainer import tiny_config
    from training.trainer import train

    repo = Path(__file__).resolve().parents[1]
    bundle, out = tmp_path / "bundle", tmp_path / "out"
    pack(prepared, bundle / "data")
    train(tiny_config(max_steps=1, val_every=0), prepared, tmp_path / "run", device="cpu")
    (bundle / "ckpt").mkdir()
    (tmp_path / "run" / "checkpoints" / "last.pt").rename(bundle / "ckpt" / "last.pt")
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    (bundle / "gpu.yaml").write_text(yaml.safe_dump({**config, "max_steps": 10_000}))
    out.mkdir()
    env = {**os.environ, "DEV": "cpu", "PHASES": "A:2:2e-4", "ARMS": "plain: gan:--gan", "BUNDLE": str(bundle),
           "OUT": str(out), "WORK": str(tmp_path / "work"), "BENCH": "0", "GOLDEN": "0"}
    done = subprocess.run(["bash", str(repo / "tools" / "gpu_session.sh")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    returned = sorted(p.name for p in out.iterdir())
    assert returned == ["gan-A.safetensors", "logs.tar.gz", "plain-A.safetensors", "plain-last-bf16.pt.gz"]
    with tarfile.open(out / "logs.tar.gz") as logs:
        names = {Path(n).name for n in logs.getnames()}
        gan_metrics = logs.extractfile(next(m for m in logs.getmembers() if m.name.endswith("gan-metrics.csv")))
        assert b"generator_gan" in gan_metrics.read()
    assert {"run.log", "plain.log", "gan.log", "plain-metrics.csv"} <= names
    from models import load_checkpoint

    assert load_checkpoint(out / "plain-A.safetensors").config == tiny_config().model_config()
