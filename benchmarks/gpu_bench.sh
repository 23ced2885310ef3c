#!/usr/bin/env bash
# GPU benchmark for a machine with an NVIDIA GPU.
# 1. benchmarks/bench_gpu.py: the CUDA-graph engine (fp16, bf16) against the PyTorch CUDA fp16 engine of the
#    same run, model-only at 256 px, batch 1, paper-rt / fomm-vox256 / paper-vox256, and its parity with fp32
#    on real frames (needs only torch, OpenCV, PyYAML and safetensors).
# 2. `reenact bench`: PyTorch CUDA graphs, PyTorch CUDA fp16, ONNX Runtime CUDA and (if torch-tensorrt
#    imports) TensorRT on fomm-vox256 and the real-time presets, with the eager fp32 full-recompute baseline
#    of the same run on the GPU. Needs onnxruntime-gpu for the ONNX Runtime CUDA rows.
# JSON to benchmarks/results/ (and to $OUT where that is set).
#
#   bash benchmarks/gpu_bench.sh [FRAMES]          # e.g. on the project's GPU machine
set -euo pipefail
cd "$(dirname "$0")/.."
FRAMES="${1:-50}"
RESULT="benchmarks/results/engines-gpu-$(hostname)-$(date -u +%Y%m%d-%H%M).json"
export REENACT_CACHE="${REENACT_CACHE:-/tmp/reenact-cache}"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || { echo "no NVIDIA GPU visible" >&2; exit 1; }
STATUS=0  # a failing step is reported and the next still runs
python3 -m benchmarks.bench_gpu || { echo "bench_gpu failed" >&2; STATUS=1; }
# End to end (reenact animate's loop, by stage) with the bundled weights: what is left once the model is fast.
E2E="benchmarks/results/end-to-end-gpu-$(hostname)-$(date -u +%Y%m%d-%H%M).json"
python3 -m benchmarks.bench_end_to_end --engine torch-cudagraph --engine torch-cuda --baseline-device cuda \
    --frames 75 --baseline-frames 20 --rounds 2 --out "$E2E" || { echo "bench_end_to_end failed" >&2; STATUS=1; }
if [ -n "${OUT:-}" ] && [ -f "$E2E" ]; then cp "$E2E" "$OUT/"; fi
python3 - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
try:
    import onnxruntime as ort; print("onnxruntime", ort.__version__, ort.get_available_providers())
except Exception as exc:
    print("onnxruntime unavailable:", exc)
try:
    import torch_tensorrt; print("torch_tensorrt", torch_tensorrt.__version__)
except Exception as exc:
    print("torch_tensorrt unavailable:", exc)
PY

ENGINES=(--engine torch-cudagraph --engine torch-cuda --engine onnxruntime-cuda --engine tensorrt --engine onnxruntime-cpu)
PRESETS=(--preset fomm-vox256 --preset paper-vox256 --preset fomm-rt --preset paper-rt)
# Engines that can't start (no onnxruntime-gpu, no TensorRT) are reported as unavailable rows, not errors.
python3 -m reenact_app.cli bench "${PRESETS[@]}" "${ENGINES[@]}" --frames "$FRAMES" --baseline-device cuda \
    --json "$RESULT"
if [ -n "${OUT:-}" ]; then cp "$RESULT" "$OUT/"; fi
echo "wrote $RESULT: copy the table into docs/performance.md with the GPU model named"
exit "$STATUS"
