"""ONNX export of the model as three graphs: keypoint detector, source encoder, animate.

Why three: the avatar side (encoder features, downscaled source, its keypoints) runs once per avatar,
the driving side (keypoints + animate) once per frame, so the per-frame graphs carry no avatar work.
Every graph takes float32 NCHW images in [0, 1]; the engines convert uint8 frames in numpy.

The default exporter is TorchScript-based (`dynamo=False`): on this model it produced a single
self-contained .onnx file, exported in seconds and ran at least as fast in ONNX Runtime as the dynamo
exporter's graph (see docs/engines.md). `exporter="dynamo"` is kept for comparison; it writes weights to
a separate `.onnx.data` file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from models import ReenactModel
from reenact_common.errors import ReenactError

log = logging.getLogger(__name__)

OPSET = 17
PART_NAMES = ("kp_detector", "source_encoder", "animate")
MANIFEST = "manifest.json"
# Bumped whenever the graphs' inputs or outputs change for the same weights and config, so exports and
# TensorRT engines cached under model_hash are rebuilt (2: the blend's rest_occlusion; 3: animate also
# returns the motion, displacement and visibility, for the app's full-resolution output; 4: the
# anti-aliased downscale blurs only the pixels it keeps, same outputs, a faster keypoint graph).
GRAPH_VERSION = 4
# The animate graph's outputs: the animated crop and the motion behind it (models/source_blend.py).
ANIMATE_OUTPUTS = ("prediction", "displacement", "visibility")


class ExportError(ReenactError):
    """An ONNX export, check or parity test failed."""


class KeypointPart(nn.Module):
    """image (1,3,H,W) -> kp_value (1,K,2)[, kp_jacobian (1,K,2,2)]."""

    def __init__(self, model: ReenactModel):
        super().__init__()
        self.kp_detector = model.kp_detector
        self.jacobian = model.config.estimate_jacobian

    def forward(self, image: torch.Tensor):
        kp = self.kp_detector(image)
        return (kp["value"], kp["jacobian"]) if self.jacobian else (kp["value"],)


class SourceEncoderPart(nn.Module):
    """image[, kp_source] -> (source_small, features[, rest_occlusion]): the generator's avatar-only work.

    With the warped-source blend it also takes the avatar's keypoints and returns its occlusion map at
    rest (the blend's normalisation); without, the keypoints are only stored, not used, so they are left out."""

    def __init__(self, model: ReenactModel):
        super().__init__()
        self.generator = model.generator
        self.jacobian = model.config.estimate_jacobian
        self.blend = uses_source_image(model.config)

    def forward(self, image: torch.Tensor, *kp):
        if self.blend:
            kp_source = {"value": kp[0], "jacobian": kp[1]} if self.jacobian else {"value": kp[0]}
        else:
            kp_source = {"value": image.new_zeros(1, 1, 2)}
        state = self.generator.encode_source(image, kp_source)
        return tuple(state[name] for name in encoder_output_names(self.blend))


class AnimatePart(nn.Module):
    """(source_small, features[, source_image, rest_occlusion], kp_source, kp_driving) -> prediction (1,3,H,W),
    displacement (1,h,w,2), visibility (1,1,H,W) (ANIMATE_OUTPUTS).

    `source_image` and `rest_occlusion` are inputs only with the warped-source blend (it warps the full
    avatar where the occlusion map, relative to its value at rest, sees it)."""

    def __init__(self, model: ReenactModel):
        super().__init__()
        self.generator = model.generator
        self.jacobian = model.config.estimate_jacobian
        self.avatar = avatar_names(uses_source_image(model.config))

    def forward(self, *args):
        state = dict(zip(self.avatar, args))
        kp = args[len(self.avatar):]
        if self.jacobian:
            kp_source = {"value": kp[0], "jacobian": kp[1]}
            kp_driving = {"value": kp[2], "jacobian": kp[3]}
        else:
            kp_source, kp_driving = {"value": kp[0]}, {"value": kp[1]}
        # Without the warped-source blend only out["deformed"] reads source_image and it is not an
        # output, so the exporter drops that warp; a tiny stand-in keeps the graph free of a full-size input.
        state.setdefault("source_image", state["source_small"][:, :, :1, :1])
        state["kp_source_value"] = kp_source["value"]
        if self.jacobian:
            state["kp_source_jacobian"] = kp_source["jacobian"]
        out = self.generator.animate(state, kp_driving)
        return tuple(out[name] for name in ANIMATE_OUTPUTS)


def uses_source_image(config) -> bool:
    """Whether the per-frame graph needs the avatar image itself (the warped-source blend)."""
    return config.generator.warped_source_blend


def avatar_names(blend: bool) -> list[str]:
    """The avatar-side inputs of the animate graph, in order (also the generator's state keys)."""
    return ["source_small", "features"] + (["source_image", "rest_occlusion"] if blend else [])


def encoder_output_names(blend: bool) -> list[str]:
    """The source encoder graph's outputs: the avatar-side inputs other than the avatar image itself."""
    return [name for name in avatar_names(blend) if name != "source_image"]


def avatar_feed(sessions: dict, avatar, jacobian: bool, blend: bool) -> tuple[list, dict]:
    """Run the kp detector and source encoder graphs (`sessions[part].run(None, feed)`, onnxruntime's
    call) on the avatar array: its keypoint outputs, and the animate graph's avatar-side inputs by name
    (kp_source_* included). With the blend the encoder also takes the keypoints (for the occlusion map at
    rest) and the animate graph the avatar image itself."""
    kp = sessions["kp_detector"].run(None, {"image": avatar})
    kp_feed = dict(zip(kp_names(jacobian, "kp_source"), kp))
    encoded = sessions["source_encoder"].run(None, {"image": avatar, **(kp_feed if blend else {})})
    feed = dict(zip(encoder_output_names(blend), encoded))
    if blend:
        feed["source_image"] = avatar
    return kp, {**{name: feed[name] for name in avatar_names(blend)}, **kp_feed}


def part_modules(model: ReenactModel) -> dict[str, nn.Module]:
    """The three wrappers in eval mode: torch.onnx.export restores the wrapper's train/eval mode onto
    every submodule afterwards, so a wrapper left in (default) training mode flips the model's
    BatchNorms to training mode."""
    return {
        "kp_detector": KeypointPart(model).eval(),
        "source_encoder": SourceEncoderPart(model).eval(),
        "animate": AnimatePart(model).eval(),
    }


def kp_names(jacobian: bool, prefix: str = "kp") -> list[str]:
    return [f"{prefix}_value", f"{prefix}_jacobian"] if jacobian else [f"{prefix}_value"]


@dataclass(frozen=True)
class PartSpec:
    name: str
    inputs: list[str]
    outputs: list[str]


def part_specs(jacobian: bool, with_source_image: bool = False) -> dict[str, PartSpec]:
    avatar = avatar_names(with_source_image)
    encoder_inputs = ["image", *(kp_names(jacobian, "kp_source") if with_source_image else [])]
    return {
        "kp_detector": PartSpec("kp_detector", ["image"], kp_names(jacobian)),
        "source_encoder": PartSpec("source_encoder", encoder_inputs, encoder_output_names(with_source_image)),
        "animate": PartSpec(
            "animate",
            [*avatar, *kp_names(jacobian, "kp_source"), *kp_names(jacobian, "kp_driving")],
            list(ANIMATE_OUTPUTS),
        ),
    }


@dataclass
class ExportResult:
    """What `export_onnx` wrote; serialised as manifest.json next to the graphs."""

    directory: str
    files: dict[str, str]
    opset: int
    exporter: str
    model_hash: str
    config: dict
    jacobian: bool
    image_size: int
    parity: dict[str, float] = field(default_factory=dict)
    int8_calibration: str = ""  # what animate_int8 was calibrated on ("" in exports older than this field)

    def path(self, part: str) -> Path:
        return Path(self.directory) / self.files[part]

    @property
    def uses_source_image(self) -> bool:
        """Whether the animate graph takes the avatar image (the warped-source blend)."""
        return bool(self.config.get("generator", {}).get("warped_source_blend", False))


def model_hash(model: ReenactModel) -> str:
    """Stable hash of weights + config + GRAPH_VERSION: keys exported graphs and TensorRT engines to the
    exact model and graph layout."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    digest.update(f"graph-version-{GRAPH_VERSION}".encode())
    for part, state in model.state_dicts().items():
        for key in sorted(state):
            digest.update(f"{part}.{key}".encode())
            digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def example_inputs(model: ReenactModel) -> dict[str, tuple[torch.Tensor, ...]]:
    """Traced shapes (batch 1, static H=W=image_size): what every engine feeds at run time."""
    size = model.config.image_size
    image = torch.rand(1, 3, size, size)
    modules = part_modules(model)
    blend = uses_source_image(model.config)
    with torch.no_grad():
        kp = modules["kp_detector"](image)
        encoder_args = (image, *kp) if blend else (image,)
        encoded = modules["source_encoder"](*encoder_args)
    avatar = (*encoded[:2], image, *encoded[2:]) if blend else encoded
    return {"kp_detector": (image,), "source_encoder": encoder_args, "animate": (*avatar, *kp, *kp)}


def _export_one(module: nn.Module, args: tuple, spec: PartSpec, path: Path, exporter: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(
                module, args, str(path), input_names=spec.inputs, output_names=spec.outputs,
                opset_version=OPSET, do_constant_folding=True, dynamo=False,
            )
        elif exporter == "dynamo":
            program = torch.onnx.export(
                module, args, input_names=spec.inputs, output_names=spec.outputs,
                opset_version=max(OPSET, 18), dynamo=True, verbose=False,
            )
            program.optimize()
            program.save(str(path), external_data=True)
        else:
            raise ExportError(f"unknown exporter {exporter!r}; use 'torchscript' or 'dynamo'")


def check_graph(path: Path) -> None:
    """onnx.checker on the file (by path, so graphs with external data work too)."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path.name} failed onnx.checker: {exc}") from exc


def export_onnx(
    model: ReenactModel, out_dir: str | Path, exporter: str = "torchscript", check: bool = True
) -> ExportResult:
    """Write kp_detector.onnx, source_encoder.onnx, animate.onnx and manifest.json into out_dir."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"can't create output folder {out_dir}: {exc.strerror or exc}") from exc
    model = model.eval().to("cpu", torch.float32)
    jacobian = model.config.estimate_jacobian
    specs = part_specs(jacobian, uses_source_image(model.config))
    modules = part_modules(model)
    inputs = example_inputs(model)
    files: dict[str, str] = {}
    for part in PART_NAMES:
        path = out_dir / f"{part}.onnx"
        log.info("exporting %s -> %s (%s exporter, opset %d)", part, path, exporter, OPSET)
        try:
            _export_one(modules[part], inputs[part], specs[part], path, exporter)
        except ExportError:
            raise
        except Exception as exc:  # exporter internals raise many types
            raise ExportError(f"ONNX export of {part} failed with the {exporter} exporter: {exc}") from exc
        if check:
            check_graph(path)
        files[part] = path.name
    result = ExportResult(
        directory=str(out_dir), files=files, opset=OPSET, exporter=exporter, model_hash=model_hash(model),
        config=model.config.to_dict(), jacobian=jacobian, image_size=model.config.image_size,
    )
    model.eval()
    write_manifest(result)
    return result


def write_manifest(result: ExportResult) -> Path:
    path = Path(result.directory) / MANIFEST
    data = asdict(result)
    data.pop("directory")
    path.write_text(json.dumps(data, indent=2))
    return path


def read_manifest(directory: str | Path) -> ExportResult:
    """Load an export folder's manifest; clear error when the folder is not an export."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise ExportError(f"{directory} is not an ONNX export (no {MANIFEST}); run `reenact export --format onnx`")
    try:
        data = json.loads(path.read_text())
        result = ExportResult(directory=str(directory), **data)
    except (json.JSONDecodeError, TypeError) as exc:
        raise ExportError(f"{path} is unreadable ({exc}); re-run the export") from exc
    missing = [name for name in result.files.values() if not (directory / name).is_file()]
    if missing:
        raise ExportError(f"{directory}: missing graph file(s) {missing}; re-run the export")
    return result
