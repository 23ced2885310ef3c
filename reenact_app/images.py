"""One safe loader for avatar pictures, which come from strangers.

`load_avatar_image(path) -> uint8 RGB (H, W, 3)` never decodes blindly:
- the file is read as bytes (np.fromfile + cv2.imdecode: any path, spaces and non-ASCII included, on
  every OS; cv2.imread can't open non-ASCII paths on Windows);
- the format and the pixel dimensions are read from the header first (`read_header`, pure Python):
  unknown formats, tiny images and absurd sizes are refused before any pixel is allocated; a large
  JPEG is decoded at 1/2, 1/4 or 1/8 resolution by libjpeg itself (cv2.IMREAD_REDUCED_*), other
  formats are refused above MAX_DECODE_PIXELS (OpenCV would decode them fully first);
- a JPEG without its end marker is reported as truncated (libjpeg would silently return grey rows);
- greyscale, RGBA (composited on white), 16-bit, float, CMYK JPEG and animated GIF (first frame) are
  converted; the result is downscaled to at most `max_side` pixels on its long side.
Every failure is a reenact_common.errors.MediaError whose message says what to do.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from reenact_common.errors import MediaError

MAX_FILE_BYTES = 200 * 1024 * 1024
MAX_DECODE_PIXELS = 40_000_000  # full decodes allocate up to 8 bytes per pixel (16-bit RGBA)
MAX_SIDE = 2048  # the loaded avatar is at most this large (the pipeline shrinks it further)
MIN_SIDE = 32  # below this there is no face to animate
_FIX = "Use a JPEG or PNG portrait, at least 256 pixels wide."


@dataclass(frozen=True)
class ImageHeader:
    """What the file says about itself, before decoding."""

    format: str  # jpeg, png, gif, bmp, webp, tiff
    width: int
    height: int
    complete: bool = True  # False: a JPEG without its end-of-image marker (truncated)


def _png(b: bytes) -> ImageHeader | None:
    if len(b) >= 24 and b[12:16] == b"IHDR":
        w, h = struct.unpack(">II", b[16:24])
        return ImageHeader("png", w, h)
    return None


def _gif(b: bytes) -> ImageHeader | None:
    if len(b) >= 10:
        w, h = struct.unpack("<HH", b[6:10])
        return ImageHeader("gif", w, h)
    return None


def _bmp(b: bytes) -> ImageHeader | None:
    if len(b) >= 26:
        size = struct.unpack("<I", b[14:18])[0]
        if size == 12:
            w, h = struct.unpack("<HH", b[18:22])
        else:
            w, h = struct.unpack("<ii", b[18:26])
        return ImageHeader("bmp", abs(w), abs(h))
    return None


def _webp(b: bytes) -> ImageHeader | None:
    kind = b[12:16]
    if kind == b"VP8 " and len(b) >= 30:
        w, h = struct.unpack("<HH", b[26:30])
        return ImageHeader("webp", w & 0x3FFF, h & 0x3FFF)
    if kind == b"VP8L" and len(b) >= 25:
        bits = int.from_bytes(b[21:25], "little")
        return ImageHeader("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if kind == b"VP8X" and len(b) >= 30:
        return ImageHeader("webp", int.from_bytes(b[24:27], "little") + 1, int.from_bytes(b[27:30], "little") + 1)
    return None


def _tiff(b: bytes) -> ImageHeader | None:
    end = "<" if b[:2] == b"II" else ">"
    try:
        (offset,) = struct.unpack(end + "I", b[4:8])
        (count,) = struct.unpack(end + "H", b[offset : offset + 2])
        dims: dict[int, int] = {}
        for i in range(min(count, 512)):
            entry = b[offset + 2 + 12 * i : offset + 14 + 12 * i]
            tag, typ = struct.unpack(end + "HH", entry[:4])
            if tag in (256, 257):
                dims[tag] = struct.unpack(end + ("H" if typ == 3 else "I"), entry[8:10] if typ == 3 else entry[8:12])[0]
    except struct.error:
        return None
    if 256 in dims and 257 in dims:
        return ImageHeader("tiff", dims[256], dims[257])
    return None


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(b: bytes) -> ImageHeader | None:
    """Walk the marker segments to the frame header (SOF) and the scan (SOS); the end marker must follow."""
    i, size = 2, None
    while i + 4 <= len(b):
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", b[i + 2 : i + 4])
        if marker in _SOF and i + 9 <= len(b):
            h, w = struct.unpack(">HH", b[i + 5 : i + 9])
            size = (w, h)
        if marker == 0xDA:  # start of scan: entropy data follows; FFD9 can only be the real end marker
            if size is None:
                return None
            return ImageHeader("jpeg", size[0], size[1], complete=b.find(b"\xff\xd9", i + 2 + length) != -1)
        i += 2 + length
    return ImageHeader("jpeg", size[0], size[1], complete=False) if size else None


def read_header(data: bytes) -> ImageHeader | None:
    """Format and size from the first bytes of an image file; None for anything unrecognised."""
    b = data if isinstance(data, bytes) else bytes(data)
    if b[:8] == b"\x89PNG\r\n\x1a\n":
        return _png(b)
    if b[:3] == b"\xff\xd8\xff":
        return _jpeg(b)
    if b[:6] in (b"GIF87a", b"GIF89a"):
        return _gif(b)
    if b[:2] == b"BM":
        return _bmp(b)
    if b[:4] == b"RIFF" and b[8:12] == b"WEBP":
        return _webp(b)
    if b[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff(b)
    return None


def _reduced_flag(pixels: int, limit: int) -> int | None:
    for factor, flag in ((1, cv2.IMREAD_COLOR), (2, cv2.IMREAD_REDUCED_COLOR_2), (4, cv2.IMREAD_REDUCED_COLOR_4),
                         (8, cv2.IMREAD_REDUCED_COLOR_8)):
        if pixels / factor**2 <= limit:
            return flag
    return None


def to_rgb8_from_bgr(image: np.ndarray) -> np.ndarray:
    """A decoded OpenCV picture (BGR/BGRA/grey, 8/16-bit or float) -> uint8 RGB; alpha over white."""
    img = image
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype.kind == "f":
        finite = np.nan_to_num(img.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        scale = 255.0 if finite.size and finite.max() <= 1.0 else 1.0
        img = np.clip(finite * scale, 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        img = img[..., None]
    channels = img.shape[2]
    if channels == 2:  # grey + alpha
        img = np.concatenate([img[..., :1]] * 3 + [img[..., 1:]], axis=2)
        channels = 4
    if channels == 1:
        return np.ascontiguousarray(np.repeat(img, 3, axis=2))
    if channels == 4:
        alpha = img[..., 3:4].astype(np.float32) / 255.0
        img = (img[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
    elif channels != 3:
        raise MediaError(f"unsupported image with {channels} channels. {_FIX}")
    return np.ascontiguousarray(img[..., ::-1])


def load_avatar_image(
    path: str | os.PathLike,
    max_side: int = MAX_SIDE,
    max_decode_pixels: int = MAX_DECODE_PIXELS,
    min_side: int = MIN_SIDE,
) -> np.ndarray:
    """An avatar picture as uint8 RGB (H, W, 3), long side <= max_side. Raises MediaError (see module doc)."""
    path = Path(path)
    name = path.name or str(path)
    try:
        if path.is_dir():
            raise MediaError(f"{path} is a folder, not an image. {_FIX}")
        size = path.stat().st_size
    except FileNotFoundError:
        raise MediaError(f"avatar image not found: {path}") from None
    except OSError as exc:
        raise MediaError(f"can't read avatar {path}: {exc.strerror or exc}") from None
    if size == 0:
        raise MediaError(f"avatar {name} is an empty file. {_FIX}")
    if size > MAX_FILE_BYTES:
        raise MediaError(f"avatar {name} is too large ({size / 1e6:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MiB). {_FIX}")
    try:
        raw = path.read_bytes()  # bytes + imdecode: works for any path encoding (cv2.imread does not)
    except OSError as exc:
        raise MediaError(f"can't read avatar {path}: {exc.strerror or exc}") from None
    data = np.frombuffer(raw, dtype=np.uint8)
    header = read_header(raw)
    if header is None:
        raise MediaError(f"{name} is not a picture Reenact can read (JPEG, PNG, WebP, BMP, TIFF or GIF expected). {_FIX}")
    w, h = header.width, header.height
    if min(w, h) < min_side:
        raise MediaError(f"avatar {name} is only {w}x{h} pixels: too small to hold a face. {_FIX}")
    if not header.complete:
        raise MediaError(f"avatar {name} is truncated or damaged (the JPEG data ends early); re-download or re-export it")
    pixels = w * h
    if header.format == "jpeg":
        flag = _reduced_flag(pixels, max_decode_pixels)  # libjpeg scales while decoding: memory stays small
    else:
        flag = cv2.IMREAD_UNCHANGED if pixels <= max_decode_pixels else None
    if flag is None:
        raise MediaError(
            f"avatar {name} is {w}x{h} pixels ({pixels / 1e6:.0f} MP), too large to load safely "
            f"(limit {max_decode_pixels / 1e6:.0f} MP, or any size as JPEG). Resize it to about 1024 pixels."
        )
    try:
        image = cv2.imdecode(data, flag)
    except cv2.error as exc:
        raise MediaError(f"can't decode avatar {name}: {str(exc).strip().splitlines()[-1]}. {_FIX}") from None
    if image is None or image.size == 0:
        raise MediaError(f"avatar {name} is damaged or truncated: its {header.format.upper()} data can't be decoded. {_FIX}")
    rgb = to_rgb8_from_bgr(image)
    ih, iw = rgb.shape[:2]
    if max(ih, iw) > max_side:
        f = max_side / max(ih, iw)
        rgb = cv2.resize(rgb, (max(1, round(iw * f)), max(1, round(ih * f))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(rgb)
