"""Make the README's animated example from shippable assets only.

Driver: a GRID corpus clip (CC BY 4.0: the bundled demo clip, or another GRID clip given with
--driving); avatars: the bundled public-domain portraits; model: the bundled weights, with the app's
expression retargeting. Runs `reenact animate` for each avatar, then writes a side-by-side GIF with Pillow.

    python tools/make_demo_gif.py -o docs/demo.gif [--driving GRID_CLIP]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from reenact_common.paths import assets_dir
from reenact_common.video_io import iter_frames
from reenact_app.cli import main as reenact


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="docs/demo.gif")
    parser.add_argument("--driving", help="a shippable driving clip (GRID corpus); default: the bundled demo clip")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--size", type=int, default=128, help="tile size in the GIF")
    parser.add_argument("--step", type=int, default=2, help="keep every n-th frame (smaller file)")
    args = parser.parse_args()

    from PIL import Image  # Pillow comes with matplotlib (a mediapipe dependency); docs tool only

    assets = assets_dir()
    driving = Path(args.driving) if args.driving else assets / "driving" / "demo.mp4"
    avatars = sorted((assets / "avatars").glob("*.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for avatar in avatars:
            out = Path(tmp) / f"{avatar.stem}.mp4"
            code = reenact(["animate", "--avatar", str(avatar), "--driving", str(driving), "-o", str(out),
                            "--max-frames", str(args.frames), "--no-progress"])
            if code:
                return code
            rows.append(list(iter_frames(out)))
        driver = list(iter_frames(driving, args.frames))
    s = args.size
    tiles = []
    for i in range(0, min(len(driver), *(len(r) for r in rows)), args.step):
        h, w = driver[i].shape[:2]
        side = min(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        parts = [cv2.resize(driver[i][y0 : y0 + side, x0 : x0 + side], (s, s), interpolation=cv2.INTER_AREA)]
        parts += [cv2.resize(r[i], (s, s), interpolation=cv2.INTER_AREA) for r in rows]
        tiles.append(Image.fromarray(np.concatenate(parts, axis=1)).quantize(colors=96, dither=Image.Dither.NONE))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    tiles[0].save(args.output, save_all=True, append_images=tiles[1:], duration=40 * args.step, loop=0, optimize=True)
    print(f"wrote {args.output}: {len(tiles)} frames")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
