"""`reenact animate` end to end on a shared clip; `reenact export` and `reenact bench` smoke runs; errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
import torch

from models import build_model, save_checkpoint
from reenact_app.cli import main
from tests.conftest import bgr_frames

CLIP = "wyhsirius+LIA/data/vox/driving2.mp4"  # 256x256, 25 fps
AVATAR = "alievk+avatarify-python/avatars/mona.jpg"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(build_model("paper-rt"), tmp_path_factory.mktemp("ckpt") / "paper-rt.safetensors")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("REENACT_CACHE", str(tmp_path_factory.getbasetemp() / "reenact-cache"))


@pytest.fixture(scope="module")
def avatar(shared_dir: Path) -> Path:
    return shared_dir / "data" / "stills" / AVATAR


def _decode(path: Path) -> tuple[int, float, tuple[int, int]]:
    capture = cv2.VideoCapture(str(path))
    count = 0
    size = None
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        count += 1
        size = frame.shape[:2]
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return count, fps, size


@pytest.mark.parametrize("crop", ["--crop", "--no-crop"])
def test_animate_end_to_end(tmp_path, clips_dir, avatar, checkpoint, crop, capsys):
    out = tmp_path / "out.mp4"
    code = main(["animate", "--avatar", str(avatar), "--driving", str(clips_dir / CLIP), "-o", str(out),
                 "--checkpoint", str(checkpoint), "--max-frames", "15", crop, "--no-progress"])
    assert code == 0
    count, fps, size = _decode(out)
    assert (count, size) == (15, (256, 256))
    assert abs(fps - 25.0) < 0.01
    printed = capsys.readouterr().out
    assert "wrote" in printed and "15 frames" in printed and "peak RSS" in printed


def test_animate_absolute_torch_engine(tmp_path, clips_dir, avatar, checkpoint):
    out = tmp_path / "abs.mp4"
    code = main(["animate", "--avatar", str(avatar), "--driving", str(clips_dir / CLIP), "-o", str(out),
                 "--checkpoint", str(checkpoint), "--max-frames", "4", "--absolute", "--adapt-scale",
                 "--engine", "torch", "--no-crop", "--no-progress"])
    assert code == 0 and _decode(out)[0] == 4


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--avatar": "missing.jpg"}, "not found"),
        ({"--avatar": "__file__"}, "not a picture Reenact can read"),
        ({"--driving": "missing.mp4"}, "video not found"),
        ({"--driving": "__file__"}, "can't open video"),
        ({"-o": "no/such/folder/out.mp4"}, "does not exist"),
        ({"-o": "out.avi"}, "must end in .mp4"),
        ({"--checkpoint": "nothing.safetensors"}, "checkpoint not found"),
        ({"--size": "128"}, "does not match"),
    ],
)
def test_animate_clear_errors(tmp_path, clips_dir, avatar, checkpoint, change, message, capsys):
    bogus = tmp_path / "bogus.bin"
    bogus.write_bytes(b"not media")
    args = {"--avatar": str(avatar), "--driving": str(clips_dir / CLIP), "-o": str(tmp_path / "o.mp4"),
            "--checkpoint": str(checkpoint)}
    for key, value in change.items():
        args[key] = str(bogus) if value == "__file__" else (value if key == "--size" else str(tmp_path / value))
    argv = ["animate", "--max-frames", "2", "--no-crop", "--no-progress"]
    for key, value in args.items():
        argv += [key, value]
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_animate_without_checkpoint_explains(tmp_path, clips_dir, avatar, monkeypatch, capsys):
    monkeypatch.setenv("REENACT_ASSETS", str(tmp_path / "no-assets"))
    code = main(["animate", "--avatar", str(avatar), "--driving", str(clips_dir / CLIP), "-o",
                 str(tmp_path / "o.mp4"), "--no-progress"])
    assert code == 1 and "no bundled weights" in capsys.readouterr().err


def test_export_command_with_parity_and_int8(tmp_path, clips_dir, checkpoint, capsys):
    out = tmp_path / "onnx"
    code = main(["export", "--checkpoint", str(checkpoint), "--format", "onnx", "-o", str(out),
                 "--parity-video", str(clips_dir / CLIP), "--parity-frames", "4", "--int8"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "parity fp32" in printed and ": OK" in printed and "parity int8" in printed
    assert {p.name for p in out.glob("*.onnx")} >= {"kp_detector.onnx", "source_encoder.onnx", "animate.onnx",
                                                    "animate_int8.onnx"}


def test_export_tensorrt_without_tensorrt_fails_clearly(tmp_path, checkpoint, capsys):
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "tensorrt", "-o", str(tmp_path)]) == 1
    assert "torch-tensorrt is not installed" in capsys.readouterr().err


def test_bench_command_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["bench", "--preset", "paper-rt", "--engine", "onnxruntime-cpu", "--frames", "2",
                 "--no-memory", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    engines = {r["engine"]: r for r in report["results"]}
    assert set(engines) == {"eager-full", "onnxruntime-cpu"}
    assert engines["onnxruntime-cpu"]["parts"]["animate"]["median_ms"] > 0
    assert engines["onnxruntime-cpu"]["speedup_vs_baseline"] > 0
    assert report["hardware"]["cpu"]
    assert "| paper-rt | onnxruntime-cpu |" in capsys.readouterr().out


def test_animate_pipelined_writes_the_serial_video(tmp_path, clips_dir, avatar, checkpoint, capsys):
    """`--pipelined` (keypoints in the decode/crop thread, one keypoint thread) writes the same video,
    full-frame output and the expression warps included."""
    videos = {}
    for flag in ("--no-pipelined", "--pipelined"):
        videos[flag] = tmp_path / f"{flag.strip('-')}.mp4"
        code = main(["animate", "--avatar", str(avatar), "--driving", str(clips_dir / CLIP), "-o",
                     str(videos[flag]), "--checkpoint", str(checkpoint), "--max-frames", "12", "--full-frame",
                     flag, "--no-progress"])
        assert code == 0
    serial, pipelined = bgr_frames(videos["--no-pipelined"], 100), bgr_frames(videos["--pipelined"], 100)
    assert len(serial) == len(pipelined) == 12
    for index, (a, b) in enumerate(zip(serial, pipelined)):
        assert (a == b).all(), f"frame {index} differs"
    assert "keypoints" in capsys.readouterr().out  # the stage summary names the keypoint stage
