"""prepare-data on real shared clips: crops hold a face, landmarks and manifest match, split by identity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.prepare import PrepareOptions, assign_splits, describe_source, prepare_data

CLIPS = [
    "ali-vilab+dreamtalk/data/style_clip/video/M030_front_happy_level3_001.mp4",  # MEAD speaker M030
    "jixinya+EAMM/test/crop/M030_sad_3_001.mp4",  # same speaker, other repo (1920x1080: face far from centre)
    "rizkiarm+LipNet/evaluation/samples/GRID/bbaf2n.mpg",  # GRID speaker, another identity
]


def test_identity_guess_and_group_split(tmp_path: Path) -> None:
    root = tmp_path / "clips"
    paths = [root / "a+r1/x/obama_speech.mp4", root / "b+r2/v/Obama.mov", root / "c+r3/M030_x.mp4",
             root / "d+r4/W009_y.mp4", root / "d+r4/other.mp4", root / "e+r5/id10001#abc.mp4", root / "f+r6/clip.mp4"]
    infos = [describe_source(p, root) for p in paths]
    assert [i.identity for i in infos[:4]] == ["obama", "obama", "M030", "W009"]
    assert infos[5].identity == "id10001" and infos[6].identity == "f+r6/clip"
    for seed in range(6):
        assign_splits(infos, PrepareOptions(test_fraction=0.4, seed=seed))
        by_identity: dict[str, set[str]] = {}
        by_repo: dict[str, set[str]] = {}
        for i in infos:
            by_identity.setdefault(i.identity, set()).add(i.split)
            by_repo.setdefault(i.repo, set()).add(i.split)
        assert all(len(s) == 1 for s in by_identity.values())
        assert all(len(s) == 1 for s in by_repo.values())  # W009 and other.mp4 share a repo: one group
        assert {i.split for i in infos} == {"train", "test"}
    assign_splits(infos, PrepareOptions(test_match=("c+r3",)))
    assert [i.split for i in infos if i.split == "test"] == ["test"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, clips_dir: Path) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("prepared")
    sources = [clips_dir / c for c in CLIPS]
    manifest = prepare_data(sources, out, PrepareOptions(size=128, max_frames=20, min_frames=8,
                                                         test_match=("rizkiarm+LipNet",)))
    return out, manifest


def test_manifest_and_files(prepared) -> None:
    out, manifest = prepared
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["size"] == 128 and manifest["skipped"] == []
    clips = {c["source"].split("/")[0]: c for c in manifest["clips"]}
    assert set(clips) == {"ali-vilab+dreamtalk", "jixinya+EAMM", "rizkiarm+LipNet"}
    assert clips["ali-vilab+dreamtalk"]["identity"] == clips["jixinya+EAMM"]["identity"] == "M030"
    assert clips["rizkiarm+LipNet"]["split"] == "test"
    assert clips["ali-vilab+dreamtalk"]["split"] == clips["jixinya+EAMM"]["split"] == "train"
    for clip in manifest["clips"]:
        assert set(clip) == {"id", "source", "identity", "split", "num_frames", "box", "fps", "face_found_fraction"}
        frames = sorted((out / clip["split"] / clip["id"]).glob("*.png"))
        assert len(frames) == clip["num_frames"] == 20
        assert frames[0].name == "00000.png"
        x0, y0, side = clip["box"]
        assert side > 0 and clip["fps"] > 0
        with np.load(out / "landmarks" / f"{clip['id']}.npz") as data:
            assert data["landmarks"].shape == (20, 478, 2) and data["landmarks"].dtype == np.float32
            assert data["found"].shape == (20,) and data["found"].dtype == bool
            assert data["found"].mean() == pytest.approx(clip["face_found_fraction"])
            assert clip["face_found_fraction"] >= 0.9
            pts = data["landmarks"][data["found"]]
            assert pts.min() > -5 and pts.max() < 133  # inside the 128 crop


def test_crops_contain_a_centred_face(prepared) -> None:
    import cv2
    import mediapipe as mp

    out, manifest = prepared
    with mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5) as detector:
        for clip in manifest["clips"]:
            image = cv2.imread(str(out / clip["split"] / clip["id"] / "00010.png"))
            assert image.shape == (128, 128, 3)
            result = detector.process(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            assert result.detections, f"no face in the crop of {clip['id']}"
            box = result.detections[0].location_data.relative_bounding_box
            cx, cy = box.xmin + box.width / 2, box.ymin + box.height / 2
            assert 0.3 < cx < 0.7 and 0.3 < cy < 0.75, clip["id"]
            assert 0.25 < box.width < 0.8  # face fills a VoxCeleb-like share of the crop


def test_prepare_data_cli(tmp_path: Path, clips_dir: Path) -> None:
    from reenact_app.cli import main

    missing = main(["prepare-data", str(tmp_path / "nope"), "-o", str(tmp_path / "out")])
    assert missing == 1
