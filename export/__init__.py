"""Export of the models to deployable formats: ONNX (three graphs + int8 variants) and TensorRT.

Depends on `models/` only. Entry points: `export_onnx`, `quantize_export`, `check_parity`,
`tensorrt_build.build_or_load` (needs torch-tensorrt and a CUDA GPU).
"""

from export.onnx_export import ExportError, ExportResult, export_onnx, model_hash, read_manifest

__all__ = ["ExportError", "ExportResult", "export_onnx", "model_hash", "read_manifest"]
