"""reenact_common.video_io on real clips: one reader for videos and frame folders, one fps fallback."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import bgr_frames
from reenact_common.errors import MediaError
from reenact_common.video_io import FALLBACK_FPS, frame_rate, iter_frames, probe_video
from training.media import read_video_frames

CLIP = "rizkiarm+LipNet/evaluation/samples/GRID/bbaf2n.mpg"  # 75 frames, 25 fps, 360x288


@pytest.fixture(scope="module")
def clip(clips_dir: Path) -> Path:
    return clips_dir / CLIP


def _write_mp4v(path: Path, frames_bgr: list[np.ndarray], fps: float) -> Path:
    h, w = frames_bgr[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for frame in frames_bgr:
        writer.write(frame)
    writer.release()
    return path


def test_frames_are_rgb_of_what_opencv_decodes(clip: Path) -> None:
    frames = list(iter_frames(clip, max_frames=5))
    expected = bgr_frames(clip, 5)
    assert len(frames) == 5
    for got, bgr in zip(frames, expected):
        assert got.dtype == np.uint8 and np.array_equal(got, bgr[..., ::-1])


def test_a_frame_folder_reads_like_the_video_it_came_from(clip: Path, tmp_path: Path) -> None:
    decoded = list(iter_frames(clip, max_frames=6))
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(decoded):
        cv2.imwrite(str(folder / f"{i:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not a frame")
    from_folder = list(iter_frames(folder))
    assert len(from_folder) == len(decoded)
    assert all(np.array_equal(a, b) for a, b in zip(from_folder, decoded))
    assert len(list(iter_frames(folder, max_frames=2))) == 2
    assert frame_rate(folder) == FALLBACK_FPS


def test_read_video_frames_picks_rgb_frames_by_index(clip: Path) -> None:
    decoded = list(iter_frames(clip, max_frames=8))
    picked = read_video_frames(clip, [7, 2])
    assert np.array_equal(picked[0], decoded[7]) and np.array_equal(picked[1], decoded[2])


def test_a_plausible_header_rate_is_kept(clip: Path, tmp_path: Path) -> None:
    video = _write_mp4v(tmp_path / "thirty.mp4", bgr_frames(clip, 4), fps=30.0)
    assert probe_video(video).fps == pytest.approx(30.0)
    assert frame_rate(video) == pytest.approx(30.0)


@pytest.mark.parametrize("header_fps", [1000.0, 0.5])
def test_an_implausible_header_rate_falls_back(clip: Path, tmp_path: Path, header_fps: float) -> None:
    """Broken headers (0, 1000, 90000 fps) would make training's shot splitter treat a 1 s gap as 1000
    frames; the app and training share one fallback."""
    video = _write_mp4v(tmp_path / "broken.mp4", bgr_frames(clip, 4), fps=header_fps)
    assert cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FPS) == pytest.approx(header_fps)  # the header lies
    assert probe_video(video).fps == FALLBACK_FPS
    assert frame_rate(video) == FALLBACK_FPS


def test_unreadable_sources_say_which_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MediaError, match="no decodable frames"):
        list(iter_frames(empty))
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "00000.png").write_bytes(b"not a png")
    with pytest.raises(MediaError, match="00000.png"):
        list(iter_frames(damaged))
    with pytest.raises(MediaError, match="video not found"):
        list(iter_frames(tmp_path / "missing.mp4"))
