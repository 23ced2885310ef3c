"""Video I/O for every layer (CLI, recorder, export calibration, training data): RGB uint8 frames in, H.264
(or mp4v) mp4 out.

Reading uses OpenCV (BGR converted to RGB once, here) and accepts a video file or a folder of frame images. Writing prefers imageio-ffmpeg's bundled ffmpeg
with libx264 (H.264 plays everywhere); OpenCV's pip wheels can't encode H.264, so without imageio-ffmpeg
the fallback is OpenCV's mp4v. Every failure is a MediaError that says which file and what to do.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from reenact_common.errors import MediaError

log = logging.getLogger(__name__)

VIDEO_EXTS = {".mp4", ".mpg", ".mpeg", ".mov", ".avi", ".mkv", ".webm", ".m4v"}
# Still-image files every part of the project reads (avatars, frame folders, evaluation sets); OpenCV
# decodes them all. A tuple, so `str.endswith(IMAGE_SUFFIXES)` works too.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
FALLBACK_FPS = 25.0  # frame folders carry no rate; broken video headers report 0, 1000 or 90000


def is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir())


def frame_files(folder: Path) -> list[Path]:
    """The frame images of a folder, in name order (00000.png, 00001.png, ...)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


@dataclass(frozen=True)
class VideoInfo:
    path: str
    fps: float
    frame_count: int  # container's estimate; may be 0 or approximate for some formats
    width: int
    height: int


def _open(path: str | Path):
    import cv2

    path = Path(path)
    if not path.is_file():
        raise MediaError(f"video not found: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise MediaError(f"can't open video {path}: not a video file or an unsupported codec")
    return capture


def probe_video(path: str | Path) -> VideoInfo:
    import cv2

    capture = _open(path)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        info = VideoInfo(
            path=str(path),
            fps=float(fps) if 1.0 <= fps <= 240.0 else FALLBACK_FPS,
            frame_count=max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))),
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
    finally:
        capture.release()
    return info


def frame_rate(path: str | Path) -> float:
    """Frames per second of a video (FALLBACK_FPS when its header is implausible) or of a frame folder."""
    return FALLBACK_FPS if Path(path).is_dir() else probe_video(path).fps


def iter_frames(path: str | Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Decoded frames of a video file or frame folder as uint8 RGB, in order and streamed (not held in
    memory); raises MediaError if an image is unreadable or the source yields no frame at all."""
    import cv2

    count = 0
    if Path(path).is_dir():
        for file in frame_files(Path(path))[:max_frames]:
            frame = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if frame is None:
                raise MediaError(f"can't read image {file}: damaged or not an image (remove or replace it)")
            count += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    else:
        capture = _open(path)
        try:
            while max_frames is None or count < max_frames:
                ok, frame = capture.read()
                if not ok:
                    break
                count += 1
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()
    if count == 0:
        raise MediaError(f"{path} contains no decodable frames")


def read_frames(path: str | Path, max_frames: int | None = None) -> list[np.ndarray]:
    return list(iter_frames(path, max_frames))


def check_writable(path: str | Path, suffix: str | None = ".mp4", create_folder: bool = False) -> Path:
    """Fail before any work if the output can't be written: a missing folder (made instead with
    create_folder), a directory, no permission, a read-only or virtual file system (/proc), a name too
    long. Permission bits don't tell (root passes `os.access` everywhere), so it opens the file for
    appending and removes it again if it was new. suffix=None: any file name."""
    path = Path(path)
    try:
        if create_folder:
            path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            raise MediaError(f"output {path} is a directory: give a file name such as {path / 'out.mp4'}")
        parent = path.parent
        if not parent.is_dir():
            problem = "is a file, not a folder" if parent.exists() else "does not exist (create it first)"
            raise MediaError(f"can't write {path}: {parent} {problem}")
        if suffix and path.suffix.lower() != suffix:
            raise MediaError(f"output {path} must end in {suffix}")
        existed = path.exists()
        with open(path, "ab"):
            pass
        if not existed:
            path.unlink()
    except OSError as exc:  # EACCES, EROFS, ENAMETOOLONG, ENOENT on /proc...: one line, no traceback
        reason = "the folder takes no new files" if exc.errno == errno.ENOENT else (exc.strerror or str(exc)).lower()
        raise MediaError(f"can't write {path}: {reason} (choose another output path)") from exc
    return path


def _first_line(exc: BaseException) -> str:
    """imageio-ffmpeg's errors carry ffmpeg's whole command line and log; the user needs the first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


class VideoWriter:
    """mp4 writer for uint8 RGB frames of one fixed size. Use as a context manager."""

    # H.264 encoder settings (not used by the mp4v fallback): the recorder's defaults favour speed; packing
    # training data asks for slow + yuv444p for fidelity.
    crf: int = 18
    preset: str = "veryfast"
    pix_fmt: str = "yuv420p"

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], codec: str = "auto",
                 crf: int | None = None, preset: str | None = None, pix_fmt: str | None = None):
        self.path = check_writable(path)
        self.fps = float(fps)
        self.width, self.height = size
        self.crf = self.crf if crf is None else crf
        self.preset = preset or self.preset
        self.pix_fmt = pix_fmt or self.pix_fmt
        self.frames = 0
        self.codec = ""
        self._ffmpeg = None
        self._cv = None
        if codec in ("auto", "h264"):
            self._ffmpeg = self._open_ffmpeg()
        if self._ffmpeg is None:
            if codec == "h264":
                raise MediaError("H.264 output needs imageio-ffmpeg: `pip install imageio-ffmpeg`")
            self._cv = self._open_cv()

    def _open_ffmpeg(self):
        try:
            import imageio_ffmpeg
        except ImportError:
            log.info("imageio-ffmpeg not installed: writing mp4v with OpenCV")
            return None
        if self.pix_fmt == "yuv420p" and (self.width % 2 or self.height % 2):
            return None  # yuv420p needs even sizes
        writer = imageio_ffmpeg.write_frames(
            str(self.path), (self.width, self.height), fps=self.fps, codec="libx264", pix_fmt_in="rgb24",
            pix_fmt_out=self.pix_fmt, quality=None, bitrate=None,
            output_params=["-crf", str(self.crf), "-preset", self.preset], macro_block_size=1,
            ffmpeg_log_level="error",
        )
        try:
            writer.send(None)  # starts ffmpeg; fails here if the codec is missing
        except Exception as exc:
            log.warning("ffmpeg H.264 writer unavailable (%s): falling back to mp4v", _first_line(exc))
            return None
        self.codec = "h264"
        return writer

    def _open_cv(self):
        import cv2

        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (self.width, self.height))
        if not writer.isOpened():
            raise MediaError(f"can't open {self.path} for writing (OpenCV mp4v encoder failed)")
        self.codec = "mp4v"
        return writer

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise MediaError(
                f"frame {frame.shape} {frame.dtype} does not match the video ({self.height}, {self.width}, 3) uint8"
            )
        try:
            if self._ffmpeg is not None:
                self._ffmpeg.send(np.ascontiguousarray(frame))
            else:
                import cv2

                self._cv.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        except (OSError, BrokenPipeError) as exc:
            raise MediaError(f"writing {self.path} failed: {_first_line(exc)} (disk full?)") from exc
        self.frames += 1

    def close(self) -> None:
        if self._ffmpeg is not None:
            writer, self._ffmpeg = self._ffmpeg, None
            try:
                writer.close()
            except Exception as exc:
                raise MediaError(f"finishing {self.path} failed: {_first_line(exc)}") from exc
        if self._cv is not None:
            self._cv.release()
            self._cv = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Largest centred square, resized to size x size (INTER_AREA when shrinking)."""
    import cv2

    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(square)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interpolation)
