#!/usr/bin/env bash
# GPU benchmark for a machine with an NVIDIA GPU.
# Runs PyTorch CUDA fp16, ONNX Runtime CUDA and (if torch-tensorrt imports) TensorRT on fomm-vox256 and
# the real-time presets, with the eager fp32 full-recompute baseline of the same run, and writes JSON to
# benchmarks/results/. Needs a CUDA build of torch; onnxruntime-gpu for the ONNX Runtime CUDA rows.
#
#   bash benchmarks/gpu_bench.sh [FRAMES]          # e.g. on the project's GPU machine
set -euo pipefail
cd "$(dirname "$0")/.."
FRAMES="${1:-50}"
OUT="benchmarks/results/engines-gpu-$(hostname)-$(date -u +%Y%m%d-%H%M).json"
export REENACT_CACHE="${REENACT_CACHE:-/tmp/reenact-cache}"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || { echo "no NVIDIA GPU visible" >&2; exit 1; }
python - <<'PY'
import torch, onnxruntime as ort
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
print("onnxruntime", ort.__version__, ort.get_available_providers())
try:
    import torch_tensorrt; print("torch_tensorrt", torch_tensorrt.__version__)
except Exception as exc:
    print("torch_tensorrt unavailable:", exc)
PY

ENGINES=(--engine torch-cuda --engine onnxruntime-cuda --engine tensorrt --engine onnxruntime-cpu)
PRESETS=(--preset fomm-vox256 --preset paper-vox256 --preset fomm-rt --preset paper-rt)
# Engines that can't start (no onnxruntime-gpu, no TensorRT) are reported as unavailable rows, not errors.
python -m reenact_app.cli bench "${PRESETS[@]}" "${ENGINES[@]}" --frames "$FRAMES" --json "$OUT"
echo "wrote $OUT: copy the table into docs/performance.md with the GPU model named"
