"""Trainer: overfitting a fixed batch, exact resume, DDP with 2 CPU processes (gloo), CLI wiring."""

from __future__ import annotations

import dataclasses

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from training.config import GanConfig, TeacherConfig, TrainConfig
from training.trainer import TrainOptions, TrainingModel, train


def make_synthetic_data(root: Path, clips: int = 3, frames: int = 6, size: int = 64) -> Path:
    """Prepared-data layout with moving textured blobs and landmarks that move with them."""
    import cv2

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base_points = rng.uniform(0.3, 0.7, (478, 2)).astype(np.float32) * size
    (root / "landmarks").mkdir(parents=True)
    manifest = {"size": size, "clips": [], "skipped": []}
    for c in range(clips):
        split = "test" if c == clips - 1 else "train"
        clip_id = f"clip{c}"
        folder = root / split / clip_id
        folder.mkdir(parents=True)
        colour = rng.uniform(0.3, 1.0, 3)
        landmarks = np.zeros((frames, 478, 2), np.float32)
        for f in range(frames):
            dx, dy = 6 * np.sin(f + c), 4 * np.cos(1.3 * f)
            cx, cy = size / 2 + dx, size / 2 + dy
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (size / 6) ** 2))
            stripes = 0.5 + 0.5 * np.sin((xx - cx) / 3.0)
            image = (blob[..., None] * stripes[..., None] * colour * 255).astype(np.uint8)
            cv2.imwrite(str(folder / f"{f:05d}.png"), image)
            landmarks[f] = base_points + np.array([dx, dy], np.float32)
        np.savez(root / "landmarks" / f"{clip_id}.npz", landmarks=landmarks, found=np.ones(frames, bool))
        manifest["clips"].append({"id": clip_id, "source": clip_id, "identity": clip_id, "split": split,
                                  "num_frames": frames, "box": [0, 0, size], "fps": 25.0, "face_found_fraction": 1.0})
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


TINY_MODEL = {
    "kp_detector": {"block_expansion": 8, "max_features": 64, "num_blocks": 3},
    "dense_motion": {"block_expansion": 8, "max_features": 64, "num_blocks": 3, "occlusion_channels": [16, 8]},
    "generator": {"block_expansion": 8, "max_features": 32, "num_bottleneck_blocks": 1},
}


def tiny_config(**changes) -> TrainConfig:
    base = dict(preset="paper-rt", model_overrides=TINY_MODEL, image_size=64, batch_size=2, max_steps=4,
                teacher=TeacherConfig(warmup_steps=1, keypoint_anneal_steps=2), sample_every=0, val_every=2,
                val_pairs=2, log_every=1, checkpoint_every_s=0, threads=1)
    base.update(changes)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return make_synthetic_data(tmp_path_factory.mktemp("synthetic"))


def test_overfits_a_fixed_batch(data_dir: Path) -> None:
    from models import build_model
    from training.dataset import PairDataset

    torch.set_num_threads(1)  # tiny tensors: extra threads only spin on a busy 2-core machine
    torch.manual_seed(0)
    config = tiny_config(teacher=TeacherConfig(enabled=False))
    model = build_model(config.model_config())
    tm = TrainingModel(model.kp_detector, model.generator, config, None)
    dataset = PairDataset(data_dir, "train", 64, seed=0, augment=False)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(2)])
    optimizer = torch.optim.Adam(tm.parameters(), lr=2e-3, betas=(0.5, 0.999))
    history = []
    for step in range(30):
        losses, _ = tm(batch, step=0)  # step fixed: same TPS warp every time
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        history.append(total.item())
    assert np.mean(history[-3:]) < 0.8 * np.mean(history[:3]), history


TINY_GAN = GanConfig(enabled=True, block_expansion=8, max_features=32, num_blocks=3, scales=(1.0, 0.5),
                     feature_matching=(10.0, 10.0, 10.0))


@pytest.mark.parametrize("gan", [False, True], ids=["plain", "gan"])
def test_resume_continues_identically(data_dir: Path, tmp_path: Path, gan: bool) -> None:
    # GAN: a generator ramp that spans the interruption, so its saved position is checked too
    config = tiny_config(gan=dataclasses.replace(TINY_GAN, warmup_steps=3)) if gan else tiny_config()
    straight = train(config, data_dir, tmp_path / "a", device="cpu")
    first = train(config, data_dir, tmp_path / "b", device="cpu", options=TrainOptions(stop_at_step=2))
    assert first["steps"] == 2
    resumed = train(config, data_dir, tmp_path / "b", resume=True, device="cpu")
    assert resumed["steps"] == 4
    for key, value in straight["state"].items():
        assert torch.equal(value, resumed["state"][key]), key
    run = tmp_path / "a"
    for name in ("config.yaml", "metrics.csv", "best.safetensors", "final.safetensors", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    from models import load_checkpoint

    exported = load_checkpoint(run / "final.safetensors")
    assert exported.config == config.model_config()
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0] == "step,elapsed_s,split,name,value" and any(",val,val_l1," in r for r in rows)


def _ddp_worker(rank: int, port: int, data_dir: str, out: str, result: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    import torch.distributed as dist

    # GAN on: the discriminator is a second DDP module whose replicas must stay identical too.
    summary = train(tiny_config(max_steps=3, val_every=0, gan=TINY_GAN), Path(data_dir), Path(out), device="cpu")
    torch.save(summary["state"], result)
    dist.destroy_process_group()


def test_ddp_two_cpu_processes_end_identical(data_dir: Path, tmp_path: Path) -> None:
    import multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_ddp_worker, args=(r, port, str(data_dir), str(tmp_path / "run"), str(tmp_path / f"r{r}.pt")))
             for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0
    states = [torch.load(tmp_path / f"r{r}.pt", weights_only=True) for r in range(2)]
    assert any(key.startswith("discriminator.") for key in states[0])
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    from models import build_model

    torch.manual_seed(0)
    init = build_model(tiny_config().model_config()).kp_detector.state_dict()
    assert any(not torch.equal(init[k], states[0][f"kp_detector.{k}"]) for k in init)  # it did train


def test_train_cli_and_config_errors(data_dir: Path, tmp_path: Path) -> None:
    from reenact_app.cli import main
    from training.config import save_train_config

    path = tmp_path / "tiny.yaml"
    save_train_config(tiny_config(max_steps=2, teacher=TeacherConfig(enabled=True, warmup_steps=0)), path)
    assert main(["train", "--config", str(path), "--data", str(data_dir), "--out", str(tmp_path / "run"),
                 "--no-teacher", "--sample-every", "1"]) == 0
    assert list((tmp_path / "run" / "samples").glob("*.png"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("preset: paper-rt\nteacher: {landmark_indices: [1, 2]}\n")
    assert main(["train", "--config", str(bad), "--data", str(data_dir), "--out", str(tmp_path / "x")]) == 1
    bad.write_text("preset: paper-rt\nbatchsize: 3\n")
    assert main(["train", "--config", str(bad), "--data", str(data_dir), "--out", str(tmp_path / "x")]) == 1


def test_resume_follows_the_new_configs_learning_rate_schedule(data_dir: Path, tmp_path: Path) -> None:
    """Finishing a long run with a lower lr = edit lr / lr_milestones and resume (not the checkpoint's)."""
    import csv

    run = tmp_path / "run"
    train(tiny_config(max_steps=6, val_every=0), data_dir, run, device="cpu", options=TrainOptions(stop_at_step=3))
    # resume with lr 1e-3 and a drop to 1e-4 at 4 of 6 steps: steps 4..6 log lr 1e-3 then 1e-4
    train(tiny_config(max_steps=6, val_every=0, lr=1e-3, lr_milestones=(4 / 6,)), data_dir, run, resume=True,
          device="cpu")
    with open(run / "metrics.csv") as handle:
        lrs = {int(r["step"]): float(r["value"]) for r in csv.DictReader(handle) if r["name"] == "lr"}
    assert lrs[2] == pytest.approx(2e-4)
    assert lrs[4] == pytest.approx(1e-4) and lrs[6] == pytest.approx(1e-4)


def test_occlusion_heads_can_start_open() -> None:
    """occlusion_init_bias: the paper's 2x/4x occlusion maps start near 1 instead of a noisy ~0.5."""
    from models import build_model
    from training.trainer import open_occlusion_heads

    torch.manual_seed(0)
    model = build_model(tiny_config().model_config())
    image = torch.rand(1, 3, 64, 64)
    kp = model.kp_detector(image)
    with torch.no_grad():
        before = model.generator(image, kp_driving=kp, kp_source=kp)["occlusion_map"]
        assert open_occlusion_heads(model.generator, 3.0) == 2
        after = model.generator(image, kp_driving=kp, kp_source=kp)["occlusion_map"]
    assert torch.equal(before[0], after[0])  # the dense-motion-resolution map is FOMM's: untouched
    assert all(float(m.mean()) > 0.9 > float(b.mean()) for m, b in zip(after[1:], before[1:]))
    assert open_occlusion_heads(build_model("fomm-rt").generator, 3.0) == 0  # no multi-scale maps: no-op


def test_trainer_applies_the_occlusion_init_even_with_resume(data_dir: Path, tmp_path: Path) -> None:
    summary = train(tiny_config(max_steps=1, val_every=0, occlusion_init_bias=3.0), data_dir, tmp_path / "run",
                    resume=True, device="cpu")  # --resume on an empty run folder: a fresh start
    biases = [v for k, v in summary["state"].items() if "occlusion_restoration.heads" in k and k.endswith("bias")]
    assert len(biases) == 3 and abs(float(biases[0]) - 3.0) > 1 and all(abs(float(b) - 3.0) < 0.01 for b in biases[1:])


def test_init_step_continues_the_schedule_from_published_weights(data_dir: Path, tmp_path: Path) -> None:
    """A run whose last.pt is gone (only its .safetensors came back) continues at its step, not at 0,
    also from a published file with the warped-source blend on (a weightless stage the run may leave off)."""
    import csv

    from models import convert_checkpoint

    first = tmp_path / "first"
    train(tiny_config(max_steps=3, val_every=0), data_dir, first, device="cpu")
    published = convert_checkpoint(first / "final.safetensors", tmp_path / "published.safetensors", warped_source_blend=True)
    run = tmp_path / "run"
    summary = train(tiny_config(max_steps=6, val_every=0, lr=1e-3, lr_milestones=(4 / 6,)), data_dir, run,
                    init=published, device="cpu", options=TrainOptions(init_step=3))
    assert summary["steps"] == 6
    with open(run / "metrics.csv") as handle:
        lrs = {int(r["step"]): float(r["value"]) for r in csv.DictReader(handle) if r["name"] == "lr"}
    assert min(lrs) == 4, "steps before the init step must not be trained again"
    assert lrs[4] == pytest.approx(1e-4) and lrs[6] == pytest.approx(1e-4)
