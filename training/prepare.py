"""`reenact prepare-data`: videos and frame folders -> VoxCeleb-style face crops + mediapipe landmarks.

Output (the contract `training.dataset` and `training.evaluate` read):
    DIR/train/<clip_id>/00000.png ...   square face crops, one fixed box per clip (or per shot)
    DIR/test/<clip_id>/00000.png ...    identity-disjoint from train
    DIR/landmarks/<clip_id>.npz         `landmarks` float32 (N, 478, 2) in crop pixels, `found` bool (N,)
    DIR/manifest.json                   size, clips (id, source, identity, split, num_frames, box, fps,
                                        face_found_fraction), skipped (source, reason)

Landmark pixel convention: mediapipe's normalized coordinates times the crop size, i.e. (0, 0) is the
top-left corner of the top-left pixel and pixel i's centre is at i + 0.5.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mproc
import random
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from reenact_common.errors import MediaError
from reenact_common.video_io import VIDEO_EXTS, frame_rate, iter_frames
from training.media import find_sources

log = logging.getLogger(__name__)

NUM_LANDMARKS = 478


@dataclass(frozen=True)
class PrepareOptions:
    size: int = 256
    detect_stride: int = 2  # run face detection on every n-th frame (the box is fixed per shot anyway)
    box_scale: float = 1.9  # crop side / detected face size: VoxCeleb-like framing (hair, chin, some neck)
    shot_move: float = 0.6  # start a new shot when the face centre moves this many face sizes
    max_gap_s: float = 2.0  # or when no face is seen for this long
    min_frames: int = 16
    min_face_fraction: float = 0.5  # drop clips whose crops mostly have no face mesh
    max_frames: int | None = None  # cap per clip (tests, quick runs)
    test_fraction: float = 0.1
    test_match: tuple[str, ...] = ()  # sources whose path contains one of these go to test (with their groups)
    seed: int = 0
    workers: int = 1


@dataclass
class ClipRecord:
    id: str
    source: str
    identity: str
    split: str
    num_frames: int
    box: list[int]
    fps: float
    face_found_fraction: float


@dataclass
class SourceInfo:
    path: Path
    rel: str
    repo: str
    identity: str
    split: str = "train"
    group: str = ""
    clip_base: str = ""


# ----------------------------------------------------------------------------------------- identity
_ALIASES: list[tuple[re.Pattern, str | None]] = [
    (re.compile(r"(?<![a-z0-9])(id\d{5})(?![0-9])", re.I), None),  # VoxCeleb speaker ids
    (re.compile(r"(?<![A-Za-z0-9])([MW]\d{3})(?![0-9])"), None),  # MEAD speaker ids
    (re.compile(r"obama", re.I), "obama"),
    (re.compile(r"ocasio|(?<![a-z])aoc(?![a-z])", re.I), "aoc"),
]


def _alias(text: str) -> str | None:
    for pattern, name in _ALIASES:
        match = pattern.search(text)
        if match:
            return name or match.group(1)
    return None


def describe_source(path: Path, root: Path) -> SourceInfo:
    """Identity guess from the path: a known person/speaker id if one appears, else repo folder + stem.

    The repo folder is the nearest ancestor named like `owner+repo` (the shared-data convention), else the
    first folder under the SRC argument.
    """
    try:
        rel = path.relative_to(root.parent if (root == path or root.is_file()) else root)
    except ValueError:
        rel = Path(path.name)
    repo = next((p.name for p in path.parents if "+" in p.name), None)
    if repo is None:
        repo = rel.parts[0] if len(rel.parts) > 1 else (root.name if root.is_dir() else path.parent.name)
    if repo in rel.parts:
        rel = Path(*rel.parts[rel.parts.index(repo) + 1 :])
    is_video = path.suffix.lower() in VIDEO_EXTS
    stem = path.stem if is_video else path.name
    identity = _alias(str(rel)) or f"{repo}/{stem}"
    base = "__".join([repo, *(rel.with_suffix("") if is_video else rel).parts])
    base = re.sub(r"[^A-Za-z0-9_.+-]", "_", base)
    return SourceInfo(path=path, rel=f"{repo}/{rel}", repo=repo, identity=identity, clip_base=base)


def assign_splits(infos: list[SourceInfo], opts: PrepareOptions) -> None:
    """Group sources that may show one person (same repo folder or same alias) and split groups, not clips."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for info in infos:
        a, b = find("repo:" + info.repo), find("id:" + info.identity)
        parent[a] = b
    for info in infos:
        info.group = find("repo:" + info.repo)
    groups: dict[str, list[SourceInfo]] = {}
    for info in infos:
        groups.setdefault(info.group, []).append(info)
    names = sorted(groups)
    if opts.test_match:
        test = {g for g in names if any(m in i.rel for i in groups[g] for m in opts.test_match)}
    else:
        rng = random.Random(opts.seed)
        order = names[:]
        rng.shuffle(order)
        test, count = set(), 0
        target = max(1, round(opts.test_fraction * len(infos))) if len(names) > 1 else 0
        for g in order:
            if count >= target or len(test) == len(names) - 1:
                break
            test.add(g)
            count += len(groups[g])
    for info in infos:
        info.split = "test" if info.group in test else "train"


# ----------------------------------------------------------------------------------------- boxes
@dataclass
class Shot:
    start: int
    dets: list[tuple[int, float, float, float]] = field(default_factory=list)  # (frame, cx, cy, size)


def detect_faces(path: Path, stride: int, max_frames: int | None) -> tuple[list[tuple[int, float, float, float]], int, tuple[int, int]]:
    """Largest face per sampled frame: (frame, centre x, centre y, size) in source pixels."""
    import mediapipe as mp

    dets: list[tuple[int, float, float, float]] = []
    count, shape = 0, (0, 0)
    with mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5) as detector:
        for i, frame in enumerate(iter_frames(path)):
            if max_frames is not None and i >= max_frames:
                break
            count, shape = i + 1, frame.shape[:2]
            if i % stride:
                continue
            result = detector.process(frame)
            if not result.detections:
                continue
            h, w = frame.shape[:2]
            best = max(
                result.detections,
                key=lambda d: d.location_data.relative_bounding_box.width * d.location_data.relative_bounding_box.height,
            )
            box = best.location_data.relative_bounding_box
            bw, bh = box.width * w, box.height * h
            dets.append((i, (box.xmin + box.width / 2) * w, (box.ymin + box.height / 2) * h, max(bw, bh)))
    return dets, count, shape


def split_shots(dets: list[tuple[int, float, float, float]], opts: PrepareOptions, fps: float) -> list[Shot]:
    """New shot on a cut: the face jumps far, changes size a lot, or vanishes for a while."""
    shots: list[Shot] = []
    max_gap = max(1, int(opts.max_gap_s * fps))
    for det in dets:
        i, cx, cy, s = det
        if shots:
            cur = shots[-1]
            a = cur.dets[0]
            far = np.hypot(cx - a[1], cy - a[2]) > opts.shot_move * a[3]
            resized = not (1 / 1.5 < s / a[3] < 1.5)
            gap = i - cur.dets[-1][0] > max_gap
            if not (far or resized or gap):
                cur.dets.append(det)
                continue
        shots.append(Shot(start=i if shots else 0, dets=[det]))
    return shots


def shot_box(shot: Shot, scale: float, shape: tuple[int, int]) -> list[int]:
    """[x0, y0, side]: median face, enlarged, plus the spread of the face centre inside the shot.

    The box is kept inside the frame when it fits (already-cropped sources get no black borders)."""
    d = np.array([x[1:] for x in shot.dets], dtype=np.float64)
    cx, cy, size = np.median(d[:, 0]), np.median(d[:, 1]), np.median(d[:, 2])
    spread = max(np.ptp(d[:, 0]), np.ptp(d[:, 1]))
    side = scale * size + spread
    cy -= 0.1 * size  # detector boxes sit low (brows to chin): leave room for the forehead
    h, w = shape
    side = int(round(min(side, h, w)))
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    return [x0, y0, side]


def crop_square(frame: np.ndarray, box: list[int], size: int) -> np.ndarray:
    """Crop (black outside the frame) and resize to size x size."""
    import cv2

    x0, y0, side = box
    h, w = frame.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    crop = frame[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interp)


# ----------------------------------------------------------------------------------------- per source
def prepare_source(info: SourceInfo, out: Path, opts: PrepareOptions) -> tuple[list[ClipRecord], list[dict]]:
    """Detect, split into shots, crop, write PNGs and landmarks for one video or frame folder."""
    import cv2
    import mediapipe as mp

    try:
        fps = frame_rate(info.path)
        dets, count, shape = detect_faces(info.path, opts.detect_stride, opts.max_frames)
    except MediaError as exc:
        return [], [{"source": info.rel, "reason": str(exc)}]
    if count == 0:
        return [], [{"source": info.rel, "reason": "no readable frames"}]
    if not dets:
        return [], [{"source": info.rel, "reason": "no face detected"}]
    shots = split_shots(dets, opts, fps)
    bounds = [s.start for s in shots[1:]] + [count]
    records, skipped = [], []
    frames = iter_frames(info.path)
    index = 0
    for n, (shot, end) in enumerate(zip(shots, bounds)):
        clip_id = info.clip_base if len(shots) == 1 else f"{info.clip_base}__shot{n}"
        box = shot_box(shot, opts.box_scale, shape)
        clip_dir = out / info.split / clip_id
        if clip_dir.exists():
            shutil.rmtree(clip_dir)
        clip_dir.mkdir(parents=True)
        landmarks = np.zeros((end - shot.start, NUM_LANDMARKS, 2), dtype=np.float32)
        found = np.zeros(end - shot.start, dtype=bool)
        with mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=1, refine_landmarks=True, min_detection_confidence=0.5
        ) as mesh:
            for k in range(end - shot.start):
                frame = next(frames)
                index += 1
                crop = crop_square(frame, box, opts.size)
                bgr = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
                cv2.imwrite(str(clip_dir / f"{k:05d}.png"), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
                result = mesh.process(crop)
                if result.multi_face_landmarks:
                    pts = result.multi_face_landmarks[0].landmark
                    landmarks[k] = np.array([(p.x, p.y) for p in pts], dtype=np.float32) * opts.size
                    found[k] = True
        num = end - shot.start
        fraction = float(found.mean())
        if num < opts.min_frames or fraction < opts.min_face_fraction:
            shutil.rmtree(clip_dir)
            reason = f"shot {n}: {num} frames" if num < opts.min_frames else f"shot {n}: face mesh in {fraction:.0%} of crops"
            skipped.append({"source": info.rel, "reason": reason})
            continue
        (out / "landmarks").mkdir(exist_ok=True)
        np.savez_compressed(out / "landmarks" / f"{clip_id}.npz", landmarks=landmarks, found=found)
        records.append(
            ClipRecord(clip_id, info.rel, info.identity, info.split, num, box, round(fps, 3), round(fraction, 4))
        )
    return records, skipped


def _work(job: tuple[SourceInfo, Path, PrepareOptions]) -> tuple[list[ClipRecord], list[dict]]:
    import cv2

    cv2.setNumThreads(1)
    info, out, opts = job
    try:
        return prepare_source(info, out, opts)
    except MediaError as exc:
        return [], [{"source": info.rel, "reason": str(exc)}]


def prepare_data(sources: list[Path], out: Path, opts: PrepareOptions) -> dict:
    """Prepare every source under `sources` into `out`; returns the manifest (also written to disk)."""
    from tqdm import tqdm

    infos: list[SourceInfo] = []
    for root in sources:
        infos.extend(describe_source(p, root) for p in find_sources([root]))
    seen: set[str] = set()
    infos = [i for i in infos if not (i.clip_base in seen or seen.add(i.clip_base))]
    if not infos:
        raise MediaError(f"no videos or frame folders found under {', '.join(map(str, sources))}")
    assign_splits(infos, opts)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(info, out, opts) for info in infos]
    records: list[ClipRecord] = []
    skipped: list[dict] = []
    if opts.workers > 1:
        with mproc.get_context("spawn").Pool(opts.workers) as pool:
            results = tqdm(pool.imap_unordered(_work, jobs), total=len(jobs), desc="prepare", unit="clip")
            for recs, skips in results:
                records += recs
                skipped += skips
    else:
        for job in tqdm(jobs, desc="prepare", unit="clip"):
            recs, skips = _work(job)
            records += recs
            skipped += skips
    manifest = {
        "size": opts.size,
        "clips": [asdict(r) for r in sorted(records, key=lambda r: r.id)],
        "skipped": sorted(skipped, key=lambda s: s["source"]),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    n_train = sum(r.split == "train" for r in records)
    log.info("%d clips (%d train, %d test), %d skipped -> %s", len(records), n_train, len(records) - n_train, len(skipped), out)
    return manifest
