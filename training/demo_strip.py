"""Frame strip for the model card: avatars driven by a held-out clip with relative keypoint motion (as the
app drives them), so artifacts a user would see (identity drift, background warping, mouth/eyes not
following, blur) are visible in one PNG.

    python -m training.demo_strip --checkpoint C --driving DATA/test/<clip> --avatar A.jpg ... -o strip.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def crop_avatar(path: Path, size: int) -> np.ndarray:
    """Face crop of a still (same framing as prepare-data), RGB float in [0, 1]."""
    import cv2
    import mediapipe as mp

    from training.prepare import Shot, crop_square, shot_box

    image = cv2.imread(str(path))
    with mp.solutions.face_detection.FaceDetection(model_selection=1) as detector:
        result = detector.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    h, w = image.shape[:2]
    if result.detections:
        b = result.detections[0].location_data.relative_bounding_box
        det = (0, (b.xmin + b.width / 2) * w, (b.ymin + b.height / 2) * h, max(b.width * w, b.height * h))
        box = shot_box(Shot(0, [det]), 1.9, (h, w))
    else:
        side = min(h, w)
        box = [(w - side) // 2, (h - side) // 2, side]
    crop = crop_square(image, box, size)
    return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def render(checkpoint: Path | None, driving: Path, avatars: list[Path], every: int, count: int) -> np.ndarray:
    import cv2

    from models import load_checkpoint, normalize_kp
    from reenact_common.video_io import frame_files

    model = load_checkpoint(checkpoint)
    size = model.config.image_size
    files = frame_files(driving)[: every * count : every]
    frames = [cv2.resize(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB), (size, size)).astype(np.float32) / 255
              for f in files]
    to_t = lambda a: torch.from_numpy(a.transpose(2, 0, 1)).unsqueeze(0)  # noqa: E731
    rows = [np.concatenate(frames, axis=1)]
    with torch.no_grad():
        kp_initial = model.kp_detector(to_t(frames[0]))
        for avatar in avatars:
            source = to_t(crop_avatar(avatar, size))
            kp_source = model.kp_detector(source)
            state = model.generator.encode_source(source, kp_source)
            outs = []
            for frame in frames:
                kp = normalize_kp(kp_source, model.kp_detector(to_t(frame)), kp_initial, adapt_movement_scale=True,
                                  use_relative_movement=True, use_relative_jacobian=True)
                outs.append(model.generator.animate(state, kp)["prediction"][0].permute(1, 2, 0).numpy())
            rows.append(np.concatenate([source[0].permute(1, 2, 0).numpy()] + outs[1:], axis=1))
    strip = np.concatenate(rows, axis=0)
    return (np.clip(strip, 0, 1) * 255).round().astype(np.uint8)


def main() -> None:
    import cv2

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", type=Path, help="default: the bundled weights")
    p.add_argument("--driving", type=Path, required=True, help="a prepared clip folder (held-out split)")
    p.add_argument("--avatar", type=Path, action="append", required=True)
    p.add_argument("--every", type=int, default=8)
    p.add_argument("--count", type=int, default=8)
    p.add_argument("-o", "--output", type=Path, required=True)
    args = p.parse_args()
    strip = render(args.checkpoint, args.driving, args.avatar, args.every, args.count)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    quality = [cv2.IMWRITE_JPEG_QUALITY, 88] if args.output.suffix.lower() in (".jpg", ".jpeg") else []
    cv2.imwrite(str(args.output), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR), quality)  # 88: keeps the repo lean
    print(args.output)


if __name__ == "__main__":
    main()
