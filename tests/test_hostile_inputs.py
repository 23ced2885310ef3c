"""Hostile and odd inputs: avatar pictures, checkpoints and model configs from strangers.

Each loader must give its own clear error (MediaError / CheckpointError / ConfigError) and nothing else
may happen: no other exception type, no memory blow-up, no code execution. Property-based (hypothesis)
where the input space is large. Existing checkpoint cases (malicious pickle with a marker file, wrong
architecture, NaN weights, forged safetensors header...) live in test_models_checkpoint.py.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models import CheckpointError, ReenactModel, build_model, load_checkpoint, save_checkpoint
from models.config import ModelConfig, from_upstream_yaml
from reenact_common.errors import ConfigError
from reenact_common.errors import MediaError
from reenact_app.images import load_avatar_image, read_header

REPO = Path(__file__).resolve().parent.parent
MONA = REPO / "assets/avatars/monalisa.jpg"
GOGOL = REPO / "assets/avatars/gogol.jpg"
ODD_NAME = "my avatars/Mona Lisa – été 写真 😀.jpg"
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _png(path: Path, image: np.ndarray) -> Path:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def _bgr(path: Path = MONA) -> np.ndarray:
    return cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)


# -- avatars: formats -------------------------------------------------------------------------------
def test_avatar_formats_are_converted_to_rgb8(tmp_path):
    src = _bgr()
    rgb = src[..., ::-1]
    grey = load_avatar_image(_png(tmp_path / "grey.png", cv2.cvtColor(src, cv2.COLOR_BGR2GRAY)))
    deep = load_avatar_image(_png(tmp_path / "deep.png", src.astype(np.uint16) * 257))
    rgba = cv2.cvtColor(src, cv2.COLOR_BGR2BGRA)
    rgba[:10, :, 3] = 0  # a transparent band becomes white, not black
    alpha = load_avatar_image(_png(tmp_path / "rgba.png", rgba))
    for img in (grey, deep, alpha):
        assert img.dtype == np.uint8 and img.shape == src.shape and img.flags.c_contiguous
    assert np.abs(deep.astype(int) - rgb.astype(int)).max() <= 1
    assert alpha[:10].min() == 255 and np.array_equal(alpha[10:], rgb[10:])
    assert np.ptp(grey.astype(int), axis=2).max() == 0


def test_cmyk_jpeg_and_animated_gif(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    Image.new("CMYK", (96, 80), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")  # pure red in CMYK
    red = load_avatar_image(tmp_path / "cmyk.jpg")
    assert red.shape == (80, 96, 3) and red[..., 0].min() > 240 and red[..., 1:].max() < 20
    frames = [Image.new("RGB", (64, 48), colour) for colour in ("blue", "green", "red")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    first = load_avatar_image(tmp_path / "anim.gif")
    assert first.shape == (48, 64, 3) and first[..., 2].min() > 240 and first[..., 0].max() < 20  # first frame: blue


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".bmp", ".tiff"])
def test_header_dimensions_match_the_decoded_image(tmp_path, ext):
    src = _bgr(GOGOL)
    ok, buf = cv2.imencode(ext, src)
    header = read_header(buf.tobytes())
    assert header is not None and (header.height, header.width) == src.shape[:2] and header.complete
    (tmp_path / f"a{ext}").write_bytes(buf.tobytes())
    assert load_avatar_image(tmp_path / f"a{ext}").shape == src.shape


def test_paths_with_spaces_and_non_ascii(tmp_path):
    odd = tmp_path / ODD_NAME
    odd.parent.mkdir()
    odd.write_bytes(MONA.read_bytes())
    assert np.array_equal(load_avatar_image(odd), load_avatar_image(MONA))
    with pytest.raises(MediaError, match="not found"):
        load_avatar_image(odd.with_name("nicht da – ü.png"))


def test_tiny_empty_missing_folder_and_unknown_format(tmp_path):
    with pytest.raises(MediaError, match="1x1 pixels: too small"):
        load_avatar_image(_png(tmp_path / "one.png", np.zeros((1, 1, 3), np.uint8)))
    with pytest.raises(MediaError, match="too small"):
        load_avatar_image(_png(tmp_path / "thin.png", np.zeros((600, 8, 3), np.uint8)))
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(MediaError, match="empty file"):
        load_avatar_image(tmp_path / "empty.jpg")
    with pytest.raises(MediaError, match="folder"):
        load_avatar_image(tmp_path)
    (tmp_path / "notes.jpg").write_text("hello, not a picture")
    with pytest.raises(MediaError, match="not a picture"):
        load_avatar_image(tmp_path / "notes.jpg")


def test_truncated_jpeg_and_png_are_reported(tmp_path):
    jpeg = MONA.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) * 2 // 3])  # libjpeg alone would return grey rows
    with pytest.raises(MediaError, match="truncated"):
        load_avatar_image(tmp_path / "cut.jpg")
    png = _png(tmp_path / "full.png", _bgr()).read_bytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    with pytest.raises(MediaError, match="damaged or truncated"):
        load_avatar_image(tmp_path / "cut.png")


def _forged_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (only a few rows of real data follow)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, body: struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")


def _forged_jpeg(width: int, height: int) -> bytes:
    """A real small JPEG with its frame header (SOF) patched to claim width x height."""
    data = bytearray(MONA.read_bytes())
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


_PEAK_SCRIPT = """
import resource, sys
sys.path.insert(0, {repo!r})
from reenact_app.images import load_avatar_image
from reenact_common.errors import MediaError
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for path in sys.argv[1:]:
    try:
        img = load_avatar_image(path)
        print(path, "loaded", img.shape)
    except MediaError as exc:
        print(path, "refused", exc)
print("PEAK_MB", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""


def test_huge_images_never_exhaust_memory(tmp_path):
    """20000x20000 (1.2 GB decoded) PNG/JPEG headers and a real 48-megapixel JPEG, in a fresh process
    whose peak resident memory is measured: refused from the header or decoded downscaled by libjpeg.
    (A 434 KB 12000x12000 PNG peaks at 537 MB through a plain cv2.imdecode with IMREAD_REDUCED_*:
    OpenCV only scales JPEG while decoding.)"""
    (tmp_path / "huge.png").write_bytes(_forged_png(20000, 20000))
    (tmp_path / "huge.jpg").write_bytes(_forged_jpeg(20000, 20000))
    big = cv2.resize(_bgr(), (8000, 6000), interpolation=cv2.INTER_LINEAR)  # 144 MB if decoded fully
    ok, buf = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 70])
    del big
    (tmp_path / "big.jpg").write_bytes(buf.tobytes())
    assert read_header((tmp_path / "huge.png").read_bytes()).width == 20000
    files = [str(tmp_path / n) for n in ("huge.png", "huge.jpg", "big.jpg")]
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT.format(repo=str(REPO)), *files],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    assert lines[files[0]].startswith("refused") and "too large" in lines[files[0]]
    assert lines[files[2]].startswith("loaded (1536, 2048, 3)")
    assert lines[files[1]].split()[0] in ("loaded", "refused")
    assert float(lines["PEAK_MB"]) < 100, out.stdout


@FAST
@given(st.binary(min_size=0, max_size=4096))
def test_random_bytes_never_escape_as_other_errors(tmp_path, payload):
    path = tmp_path / "random.png"
    path.write_bytes(payload)
    try:
        img = load_avatar_image(path)
    except MediaError:
        return
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


@FAST
@given(cut=st.floats(0.0, 0.995), which=st.sampled_from(["jpg", "png"]))
def test_random_truncation_of_real_pictures(tmp_path, cut, which):
    data = MONA.read_bytes() if which == "jpg" else _png(tmp_path / "ref.png", _bgr()).read_bytes()
    path = tmp_path / f"cut.{which}"
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(MediaError):
        load_avatar_image(path)


@FAST
@given(st.lists(st.tuples(st.integers(0, 700), st.integers(0, 255)), min_size=1, max_size=6),
       st.sampled_from(["jpg", "png"]))
def test_random_header_mutations(tmp_path, edits, which):
    data = bytearray(MONA.read_bytes() if which == "jpg" else _forged_png(300, 400))
    for pos, value in edits:
        data[pos % len(data)] = value
    path = tmp_path / f"mutated.{which}"
    path.write_bytes(bytes(data))
    try:
        img = load_avatar_image(path)
    except MediaError:
        return
    assert img.dtype == np.uint8 and img.shape[2] == 3 and max(img.shape[:2]) <= 2048


def test_no_face_and_many_faces_in_avatar(tmp_path):
    from reenact_app.tracking import detect_faces, prepare_avatar

    blank = prepare_avatar(np.full((300, 300, 3), 200, np.uint8), 256)
    assert not blank.face_found and "No face found" in blank.message and blank.crop.shape == (256, 256, 3)
    mona, gogol = load_avatar_image(MONA), load_avatar_image(GOGOL)
    small = cv2.resize(gogol, (gogol.shape[1] * 2 // 3, gogol.shape[0] * 2 // 3))
    canvas = np.full((max(mona.shape[0], small.shape[0]), mona.shape[1] + small.shape[1], 3), 255, np.uint8)
    canvas[: mona.shape[0], : mona.shape[1]] = mona
    canvas[: small.shape[0], mona.shape[1]:] = small
    group = prepare_avatar(canvas, 256)
    assert group.face_found and group.num_faces >= 2 and "faces found" in group.message
    largest = max(detect_faces(canvas), key=lambda f: f.area)
    assert abs(group.box.cx - (largest.x + largest.w / 2)) < largest.w  # the largest face is used


# -- checkpoints ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("ckpt") / "good.safetensors"
    save_checkpoint(build_model("fomm-rt"), path)
    return path.read_bytes()


def _load_or_checkpoint_error(path: Path, config=None) -> ReenactModel | None:
    try:
        return load_checkpoint(path, config)
    except CheckpointError as exc:
        assert str(exc)  # a message for the user
        return None


@FAST
@given(st.one_of(st.binary(max_size=2048),
                 st.builds(lambda n, body: struct.pack("<Q", n) + b"{" + body, st.integers(0, 2**64 - 1),
                           st.binary(max_size=512))))
def test_checkpoint_random_bytes(tmp_path, payload):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(payload)
    with pytest.raises(CheckpointError):
        load_checkpoint(path, "fomm-rt")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 10**9))
def test_checkpoint_random_truncation(tmp_path, good_checkpoint, cut):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(good_checkpoint[: cut % len(good_checkpoint)])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4))
def test_checkpoint_random_header_mutations(tmp_path, good_checkpoint, edits):
    (header_len,) = struct.unpack("<Q", good_checkpoint[:8])
    data = bytearray(good_checkpoint)
    for pos, value in edits:
        data[pos % (8 + header_len)] = value  # length field and JSON header
    path = tmp_path / "mutated.safetensors"
    path.write_bytes(bytes(data))
    model = _load_or_checkpoint_error(path)
    assert model is None or isinstance(model, ReenactModel)


def _with_config(good: bytes, config_text: str) -> bytes:
    (n,) = struct.unpack("<Q", good[:8])
    header = json.loads(good[8 : 8 + n])
    header["__metadata__"]["config"] = config_text
    body = json.dumps(header).encode()
    body += b" " * (-len(body) % 8)
    return struct.pack("<Q", len(body)) + body + good[8 + n :]


_NUMBERS = st.one_of(st.integers(-10**12, 10**12), st.floats(allow_nan=True), st.booleans(), st.none(), st.text(max_size=5))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(section=st.sampled_from(["kp_detector", "dense_motion", "generator", None]),
       key=st.sampled_from(["block_expansion", "max_features", "num_blocks", "num_down_blocks", "num_bottleneck_blocks",
                            "num_kp", "image_size", "occlusion_channels", "scale_factor", "attention", "unknown"]),
       value=_NUMBERS)
def test_checkpoint_forged_model_config_never_allocates_or_crashes(tmp_path, good_checkpoint, section, key, value):
    """The config stored in the metadata drives what is built: huge or negative sizes must be refused
    from the file's tensor shapes before anything is allocated (torch would try terabytes)."""
    (n,) = struct.unpack("<Q", good_checkpoint[:8])
    config = json.loads(json.loads(good_checkpoint[8 : 8 + n])["__metadata__"]["config"])
    (config.setdefault(section, {}) if section else config)[key] = value
    path = tmp_path / "forged.safetensors"
    path.write_bytes(_with_config(good_checkpoint, json.dumps(config)))
    model = _load_or_checkpoint_error(path)
    assert model is None or isinstance(model, ReenactModel)


def test_checkpoint_huge_config_and_deeply_nested_metadata(tmp_path, good_checkpoint):
    (n,) = struct.unpack("<Q", good_checkpoint[:8])
    config = json.loads(json.loads(good_checkpoint[8 : 8 + n])["__metadata__"]["config"])
    config["generator"]["max_features"] = config["generator"]["block_expansion"] = 200_000  # 1.4 TB of weights
    path = tmp_path / "huge.safetensors"
    path.write_bytes(_with_config(good_checkpoint, json.dumps(config)))
    with pytest.raises(CheckpointError, match="outside the sane range"):
        load_checkpoint(path)
    config["generator"]["max_features"] = config["generator"]["block_expansion"] = -4
    path.write_bytes(_with_config(good_checkpoint, json.dumps(config)))
    with pytest.raises(CheckpointError, match="outside the sane range"):
        load_checkpoint(path)
    config["generator"]["max_features"] = config["generator"]["block_expansion"] = 4096  # in range, wrong shapes
    path.write_bytes(_with_config(good_checkpoint, json.dumps(config)))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(path)
    path.write_bytes(_with_config(good_checkpoint, "[" * 100_000))
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(path)


def test_upstream_pickle_with_non_tensor_entries(tmp_path):
    import torch

    model = build_model("fomm-rt")
    states = model.state_dicts()
    odd = {"kp_detector": {k: 1 for k in states["kp_detector"]}, "generator": states["generator"]}
    torch.save(odd, tmp_path / "ints.pth.tar")
    with pytest.raises(CheckpointError, match="not named tensors"):
        load_checkpoint(tmp_path / "ints.pth.tar", "fomm-rt")
    mixed = {"kp_detector": {1: torch.zeros(1), "a": torch.zeros(1)}, "generator": {}}
    torch.save(mixed, tmp_path / "mixed.pth.tar")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "mixed.pth.tar", "fomm-rt")


def test_checkpoint_save_and_load_with_odd_paths(tmp_path):
    path = tmp_path / "mes modèles" / "Prüfung – 模型 v1.safetensors"
    save_checkpoint(build_model("fomm-rt"), path)
    assert load_checkpoint(path).config == build_model("fomm-rt").config


# -- configs ----------------------------------------------------------------------------------------
_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True), st.text(max_size=6),
                  st.lists(st.integers(-3, 300), max_size=3))
_KEYS = st.one_of(st.sampled_from(["num_kp", "num_channels", "estimate_jacobian", "image_size", "kp_detector",
                                   "dense_motion", "generator", "block_expansion", "max_features", "num_blocks",
                                   "attention", "multiscale_occlusion", "occlusion_channels", "temperature"]),
                  st.text(max_size=8), st.integers(-5, 5))
_TREE = st.recursive(_LEAF, lambda children: st.dictionaries(_KEYS, children, max_size=5), max_leaves=12)


@FAST
@given(_TREE)
def test_model_config_from_dict_is_strict(data):
    try:
        config = ModelConfig.from_dict(data)
    except ConfigError as exc:
        assert str(exc)
        return
    assert isinstance(config, ModelConfig) and ModelConfig.from_dict(config.to_dict()) == config


_SECTIONS = st.sampled_from(["common_params", "kp_detector_params", "generator_params", "dense_motion_params", "x"])


@FAST
@given(st.one_of(
    _TREE.map(lambda t: yaml.safe_dump({"model_params": t})),
    st.dictionaries(_SECTIONS, _TREE, max_size=3).map(lambda t: yaml.safe_dump({"model_params": t})),
    st.text(max_size=200),
    st.binary(max_size=200),
))
def test_upstream_yaml_gives_config_or_config_error(tmp_path, text):
    path = tmp_path / "cfg.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        config = from_upstream_yaml(path)
    except ConfigError as exc:
        assert str(exc)
        return
    assert isinstance(config, ModelConfig)


def test_yaml_config_unknown_keys_wrong_types_and_odd_files(tmp_path):
    cases = {
        "unknown.yaml": ("model_params: {kp_detector_params: {num_blocks: 3, blocks: 2}}", "unknown key"),
        "type.yaml": ("model_params: {common_params: {num_kp: ten}}", "expected int"),
        "int_keys.yaml": ("model_params: {kp_detector_params: {1: 2, num_blocks: 3}}", "unknown key"),
        "list.yaml": ("model_params: {common_params: [1, 2]}", "mapping"),
        "binary.yaml": (b"\xff\xfe\x00model", "can't read config"),
    }
    for name, (text, match) in cases.items():
        path = tmp_path / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(ConfigError, match=match):
            from_upstream_yaml(path)
    with pytest.raises(ConfigError):
        from_upstream_yaml(tmp_path)  # a folder
    odd = tmp_path / "réglages modèle.yaml"
    odd.write_text("model_params: {common_params: {num_kp: 10}}")
    assert from_upstream_yaml(odd).num_kp == 10


def test_recording_to_a_path_with_spaces_and_non_ascii(tmp_path):
    from reenact_app.sinks import Recorder, RecorderConfig

    out = tmp_path / "mes vidéos" / "appel – 写真 1.mp4"
    out.parent.mkdir()
    rec = Recorder(RecorderConfig(out, fps=25, block_when_full=True))
    rec.open()
    frame = load_avatar_image(MONA)
    for i in range(10):
        rec.write(np.roll(frame, i, axis=1))
    rec.close()
    assert rec.error is None and rec.frames_written == 10
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    cap.release()
