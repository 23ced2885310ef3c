"""`reenact export`: ONNX graphs (+ parity check, optional int8) or TensorRT engines for a checkpoint."""

from __future__ import annotations

import argparse
import logging

from reenact_app.commands import add_model_arguments

log = logging.getLogger(__name__)



def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (three graphs) or build TensorRT engines",
        description="ONNX: kp_detector.onnx, source_encoder.onnx, animate.onnx (opset 17) + manifest.json, "
        "checked with onnx.checker and against PyTorch on real frames (max |diff| <= 1e-3). "
        "TensorRT: fp16 engines cached per model, GPU and versions (needs torch-tensorrt and a GPU).",
    )
    add_model_arguments(p)
    p.add_argument("--format", choices=("onnx", "tensorrt"), default="onnx")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--exporter", choices=("torchscript", "dynamo"), default="torchscript",
                   help="torch.onnx exporter (torchscript: dynamo=False, one self-contained file)")
    p.add_argument("--int8", action="store_true", help="also write an int8 (static QDQ, convolutions only) animate graph")
    p.add_argument("--parity-video", help="video whose frames are used for the parity checks (default: the "
                   "bundled demo clip); int8 is calibrated on other frames of the bundled clip, as at run time")
    p.add_argument("--parity-frames", type=int, default=8, help="frames for parity / calibration")
    p.add_argument("--no-parity", action="store_true", help="skip the parity check")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from export.onnx_export import ExportError, export_onnx
    from models import load_checkpoint

    model = load_checkpoint(args.checkpoint, args.config)
    if args.format == "tensorrt":
        from pathlib import Path

        from export.tensorrt_build import build_or_load

        build_or_load(model, Path(args.output))
        print(f"TensorRT engines cached under {args.output}/tensorrt")
        return 0
    result = export_onnx(model, args.output, exporter=args.exporter)
    print(f"wrote {', '.join(result.files.values())} to {args.output} (opset {result.opset}, checker OK)")
    from export.frames import sample_frames

    size = model.config.image_size
    frames = None
    if not args.no_parity or args.int8:
        frames = sample_frames(args.parity_video, args.parity_frames, size)
    if not args.no_parity:
        from export.parity import check_parity

        report = check_parity(model, args.output, frames)
        print(report.line())
        if not report.ok:
            raise ExportError(f"exported graphs differ from PyTorch beyond {report.tolerance:g}: {report.line()}")
    if args.int8:
        from export.parity import check_parity
        from export.quantize import quantize_export

        quantize_export(args.output, sample_frames(None, args.parity_frames, size, offset=1))
        report = check_parity(model, args.output, frames, tolerance=float("inf"), int8=True)
        print(report.line().replace(": OK", " (informational; int8 is lossy)"))
    return 0
