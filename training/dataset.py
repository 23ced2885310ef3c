"""Training pairs (source, driving) from prepared data or the upstream FOMM layout.

Reads DIR/{train,test}/<clip>/ frame folders or DIR/{train,test}/<clip>.mp4 (VoxCeleb/TaiChi as FOMM
distributes them). Landmarks from DIR/landmarks/<clip>.npz switch the teacher terms on; without them
every sample says `found = False` and the teacher losses are zero.

Every sample is a pure function of (seed, index): the sampler hands out indices by step, so a resumed run
sees exactly the batches it would have seen, with any number of loader workers and no RNG state to save.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from reenact_common.errors import MediaError
from reenact_common.video_io import VIDEO_EXTS, frame_files, is_frame_folder
from training.media import read_video_frames

NUM_LANDMARKS = 478
# mediapipe mesh: pairs of mirrored keypoint landmarks, used to swap keypoint targets on horizontal flips.
MIRROR_PAIRS = {33: 263, 105: 334, 61: 291, 133: 362, 70: 300, 234: 454, 58: 288, 172: 397, 159: 386, 145: 374}
MIRROR = {**MIRROR_PAIRS, **{v: k for k, v in MIRROR_PAIRS.items()}}


@dataclass
class Clip:
    id: str
    frames: list[Path] | None
    video: Path | None
    num_frames: int
    landmarks: np.ndarray | None = None  # (N, 478, 2) crop pixels (continuous, pixel i centre at i + 0.5)
    found: np.ndarray | None = None
    landmark_size: int = 0  # crop size the landmarks refer to
    identity: str = ""  # the person (manifest.json); clips without one count as their own person


def scan_clips(root: Path, split: str) -> list[Clip]:
    """Clips of one split; landmarks attached when DIR/landmarks/<id>.npz exists."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise MediaError(f"{folder} not found: expected prepared data (`reenact prepare-data`) with train/ and test/")
    size, identities = 0, {}
    manifest = Path(root) / "manifest.json"
    if manifest.is_file():
        import json

        meta = json.loads(manifest.read_text())
        size = int(meta.get("size", 0))
        identities = {c["id"]: c.get("identity") or c["id"] for c in meta.get("clips", []) if "id" in c}
    clips = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and is_frame_folder(entry):
            files = frame_files(entry)
            clip = Clip(entry.name, files, None, len(files))
        elif entry.is_file() and entry.suffix.lower() in VIDEO_EXTS:
            clip = Clip(entry.stem, None, entry, _count_frames(entry))
        else:
            continue
        clip.identity = identities.get(clip.id, clip.id)
        lm_file = Path(root) / "landmarks" / f"{clip.id}.npz"
        if lm_file.is_file():
            with np.load(lm_file) as data:
                landmarks, found = data["landmarks"].astype(np.float32), data["found"].astype(bool)
            if len(found) == clip.num_frames:
                clip.landmarks, clip.found = landmarks, found
                clip.landmark_size = size or _image_size(clip)
        if clip.num_frames >= 2:
            clips.append(clip)
    if not clips:
        raise MediaError(f"no clips with at least 2 frames in {folder}")
    return clips


def _count_frames(path: Path) -> int:
    import cv2

    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    cap.release()
    return n


def _image_size(clip: Clip) -> int:
    return int(load_frames(clip, [0])[0].shape[1])


def load_frames(clip: Clip, indices: list[int]) -> list[np.ndarray]:
    """RGB uint8 frames."""
    import cv2

    if clip.frames is not None:
        out = []
        for i in indices:
            image = cv2.imread(str(clip.frames[i]), cv2.IMREAD_COLOR)
            if image is None:
                raise MediaError(f"can't read {clip.frames[i]}")
            out.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        return out
    return read_video_frames(clip.video, indices)


def pixels_to_grid(points: np.ndarray, source_size: int, target_size: int) -> np.ndarray:
    """Continuous crop pixels at source_size -> [-1, 1] coordinates of a target_size image (align_corners=True)."""
    u = points / source_size * target_size - 0.5
    return (2 * u / (target_size - 1) - 1).astype(np.float32)


def color_jitter(images: list[np.ndarray], rng: np.random.Generator, strength: tuple[float, float, float, float]) -> list[np.ndarray]:
    """Same random brightness/contrast/saturation/hue change on every image of a pair (float RGB in [0, 1])."""
    import cv2

    b, c, s, h = strength
    fb, fc, fs = (rng.uniform(1 - x, 1 + x) for x in (b, c, s))
    hue = rng.uniform(-h, h) * 360.0
    order = rng.permutation(4)
    out = []
    for image in images:
        x = image
        for op in order:
            gray = (x @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
            if op == 0:
                x = x * fb
            elif op == 1:
                x = gray.mean() + fc * (x - gray.mean())
            elif op == 2:
                x = gray + fs * (x - gray)
            elif h > 0:
                hsv = cv2.cvtColor(np.clip(x, 0, 1).astype(np.float32), cv2.COLOR_RGB2HSV)
                hsv[..., 0] = (hsv[..., 0] + hue) % 360.0
                x = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
            x = np.clip(x, 0, 1)
        out.append(x.astype(np.float32))
    return out


class PairDataset(Dataset):
    """Random (source, driving) frame pairs from one clip, augmented the same way (FOMM's augmentation).

    With cross_identity_share > 0 every sample also has `driving_neutral` (+ landmarks, found) and `cross`:
    on a cross-identity sample the driver's neutral frame, on a same-clip one a copy of the source (relative
    motion from the source itself is the ordinary absolute motion)."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        image_size: int = 256,
        seed: int = 0,
        augment: bool = True,
        flip_probability: float = 0.5,
        jitter: tuple[float, float, float, float] = (0.1, 0.1, 0.1, 0.1),
        max_frame_distance: int = 0,
        length: int | None = None,
        cross_identity_share: float = 0.0,
    ):
        self.clips = scan_clips(Path(root), split)
        # Cross-identity pairs (share of samples): source and driver are different people; the driver's
        # clips need landmarks (their motion is the supervision) and a found face to be the neutral frame.
        self.cross_identity_share = cross_identity_share
        self._drivers = [c for c in self.clips if c.landmarks is not None and c.found.any()]
        self.image_size = image_size
        self.seed = seed
        self.augment = augment
        self.flip_probability = flip_probability if augment else 0.0
        self.jitter = jitter
        self.max_frame_distance = max_frame_distance
        self.length = length or 10**9

    @property
    def has_landmarks(self) -> bool:
        return any(c.landmarks is not None for c in self.clips)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        import cv2

        rng = np.random.default_rng([self.seed, int(index)])
        clip = self.clips[int(rng.integers(len(self.clips)))]
        i = int(rng.integers(clip.num_frames))
        cross = self.cross_identity_share > 0 and bool(rng.random() < self.cross_identity_share)
        cross = cross and clip.landmarks is not None and bool(clip.found[i])
        others = [c for c in self._drivers if c.identity != clip.identity] if cross else []
        if others:  # another person drives: a random frame of theirs, relative to their own neutral frame
            driver = others[int(rng.integers(len(others)))]
            j = int(rng.integers(driver.num_frames))
            neutral = int(np.argmax(driver.found))
            frames = load_frames(clip, [i]) + load_frames(driver, [j, neutral])
            views = [(clip, i), (driver, j), (driver, neutral)]
        else:
            j = self._partner(rng, clip, i)
            frames = load_frames(clip, [i, j])
            views = [(clip, i), (clip, j)]
        size = self.image_size
        images = [
            cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA if f.shape[0] > size else cv2.INTER_LINEAR)
            .astype(np.float32) / 255.0
            for f in frames
        ]
        flipped = bool(rng.random() < self.flip_probability)
        if flipped:
            images = [im[:, ::-1] for im in images]
        if self.augment and any(self.jitter):
            images = color_jitter(images, rng, self.jitter)
        if self.cross_identity_share > 0 and not others:  # same person: the source is the neutral frame
            images.append(images[0])
            views.append(views[0])
        sample = {"flipped": torch.tensor(flipped)}
        keys = ("source", "driving", "driving_neutral")
        for key, image, (owner, k) in zip(keys, images, views):
            sample[key] = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
            if owner.landmarks is not None:
                lm = pixels_to_grid(owner.landmarks[k], owner.landmark_size, size)
                if flipped:
                    lm = lm * np.array([-1.0, 1.0], dtype=np.float32)
                found = bool(owner.found[k])
            else:
                lm, found = np.zeros((NUM_LANDMARKS, 2), np.float32), False
            sample[f"{key}_landmarks"] = torch.from_numpy(lm)
            sample[f"{key}_found"] = torch.tensor(found)
        if self.cross_identity_share > 0:
            sample["cross"] = torch.tensor(bool(others))
        return sample

    def _partner(self, rng: np.random.Generator, clip: Clip, i: int) -> int:
        """The driving frame of a same-clip pair: any other frame, or one at most max_frame_distance away."""
        if self.max_frame_distance > 0:
            lo, hi = max(0, i - self.max_frame_distance), min(clip.num_frames, i + self.max_frame_distance + 1)
            j = int(rng.integers(lo, hi - 1))
        else:
            j = int(rng.integers(clip.num_frames - 1))
        return j + (j >= i)


class StepSampler(Sampler[int]):
    """Index stream by global step: step s, rank r, slot i -> (s * world + r) * batch + i. Infinite."""

    def __init__(self, start_step: int, batch_size: int, rank: int = 0, world_size: int = 1):
        self.start_step, self.batch_size, self.rank, self.world_size = start_step, batch_size, rank, world_size

    def __iter__(self) -> Iterator[int]:
        step = self.start_step
        while True:
            base = (step * self.world_size + self.rank) * self.batch_size
            yield from range(base, base + self.batch_size)
            step += 1

    def __len__(self) -> int:  # pragma: no cover - infinite
        return 2**62


def keypoint_targets(landmarks: torch.Tensor, indices: tuple[int, ...], flipped: torch.Tensor) -> torch.Tensor:
    """(B, 478, 2) landmarks -> (B, K, 2) keypoint targets; on flipped samples left/right landmarks swap roles,
    so keypoint k stays on the same side of the image (the detector cannot tell a flipped face)."""
    plain = torch.tensor(indices, device=landmarks.device)
    mirrored = torch.tensor([MIRROR.get(i, i) for i in indices], device=landmarks.device)
    idx = torch.where(flipped.view(-1, 1), mirrored.view(1, -1), plain.view(1, -1))
    return torch.gather(landmarks, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
