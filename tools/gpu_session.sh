#!/usr/bin/env bash
# One short GPU lease, used fully: CUDA golden parity, time-boxed training bursts that resume a run, and
# the GPU benchmark against the eager CUDA baseline. Every result lands in $OUT as it is made, so a lease
# cut short still returns the phases that finished. Run on one H100 and on one H200 (2026-11-28); how to use it:
# docs/training.md, "Training on a rented GPU".
#
# Before the lease (here, on the CPU machine):
#   python -m training.transport pack --data DATA --out .gpu/data --frame-step 2
#   cp RUN/checkpoints/last.pt .gpu/ckpt/last.pt        # the run to continue (resume keeps Adam's state)
#   cp -r ../shared/reference/fomm .gpu/shared/reference/ ; mkdir -p .gpu/shared/data (for the golden test)
#   cp RUN/config.yaml .gpu/gpu.yaml, then set batch_size, num_workers, lr_milestones: [] for the burst
#   for an arm with --face-perceptual: cp .../mediapipe/modules/face_landmark/face_landmark.tflite .gpu/ and
#   pip download --no-deps --python-version 3.12 --only-binary=:all: -d .gpu/whl tflite
# On the GPU machine (carry .gpu):
#   OUT=/some/dir bash tools/gpu_session.sh
# Phases are TAG:SECONDS:LR (each resumes the last; each writes ARM-TAG.safetensors). ARMS are NAME:FLAGS
# (FLAGS are extra `train` flags joined by commas, e.g. gan:--config,.gpu/gpu-gan.yaml): each arm trains
# from the same last.pt in its own process, all at once on the one GPU, splitting the CPU's workers. An arm
# whose FLAGS hold --init starts from those weights instead (no last.pt needed), e.g. the expression arm:
#   ARMS=expression PHASES="E1:240:1e-4 E2:180:1e-4" GOLDEN=0 BENCH=0 OUT=DIR bash tools/gpu_session.sh
# A call returns at most 8 files and 64 MiB: arms x phases weight files (8.3 MB each) + the slim state (14 MB)
# + logs.tar.gz (logs, metrics, samples; 3.6 MB) must fit both, so at most 5 weight files (a call that returned 6
# lost the logs; `tar -C $WORK/logs -czf $OUT/logs.tar.gz .` on the still-warm machine got them back).
# WARM=1 skips the setup and continues the arms' runs left on a machine still warm from the last call.
# Then evaluate the files back on the CPU machine with `reenact evaluate`, publish the best, and keep
# FIRSTARM-last-bf16.pt.gz: `gunzip -c plain-last-bf16.pt.gz > RUN/checkpoints/last.pt` resumes there.
set -u
cd "$(dirname "$0")/.."
DEV="${DEV:-cuda}"                       # DEV=cpu SCALE=0.05: a local smoke run of the whole script
SCALE="${SCALE:-1}"                      # multiplies every phase's seconds
PHASES="${PHASES:-A1:150:2e-4 A2:120:2e-4 B:90:2e-5}"
ARMS="${ARMS:-plain:}"
# 14 landmark-anchored keypoints grown from the shipped weights, jacobian fits, cross-identity pairs
EXPRESSION_ARM="expression:--config,configs/train/paper-rt-expression.yaml,--init,assets/weights/default.safetensors"
BUNDLE="${BUNDLE:-.gpu}"
WARM="${WARM:-0}"
BENCH="${BENCH:-1}"
GOLDEN="${GOLDEN:-1}"                    # the golden FOMM test on $DEV, beside the training
WORK="${WORK:-/tmp/gpu-session}"         # unpacked data, runs, logs
jobs_started=()
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD" REENACT_CACHE=/tmp/reenact-cache
RUNS="$WORK/runs"; DATA="$WORK/data"; LOGS="$WORK/logs"  # logs come back as one tar
[ "$WARM" = 1 ] || rm -rf "$LOGS"; mkdir -p "$LOGS"
exec > >(tee -a "$LOGS/run.log") 2>&1
read -r -a arms <<<"$ARMS"
for i in "${!arms[@]}"; do  # "expression" or "expression:MORE,FLAGS": the expression arm (+ flags)
  case "${arms[$i]}" in
    expression) arms[i]="$EXPRESSION_ARM" ;;
    expression:?*) arms[i]="$EXPRESSION_ARM,${arms[$i]#expression:}" ;;
  esac
done
cores=$(nproc); workers=$(( cores / ${#arms[@]} - 2 )); (( workers < 1 )) && workers=1

# What that machine lacks travels in the bundle: wheels (the face-mesh loss reads its .tflite with the
# pure-Python `tflite` package) and mediapipe's face_landmark.tflite (mediapipe itself is not installed there).
if compgen -G "$BUNDLE/whl/*.whl" >/dev/null; then
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$BUNDLE"/whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
[ -f "$BUNDLE/face_landmark.tflite" ] && export REENACT_FACE_MESH_MODEL="$(realpath "$BUNDLE/face_landmark.tflite")"
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
if [ "$WARM" != 1 ]; then
  python3 -c "import torch, cv2; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'cv2', cv2.__version__)"
  rm -rf "$RUNS" "$DATA"
  python3 -m training.transport unpack --bundle "$BUNDLE/data" --out "$DATA" --workers "$cores" || exit 1
  for spec in "${arms[@]}"; do  # an arm with --init starts from those weights instead of the bundle's state
    mkdir -p "$RUNS/${spec%%:*}/checkpoints"
    [[ ",${spec#*:}," == *,--init,* ]] || cp "$BUNDLE/ckpt/last.pt" "$RUNS/${spec%%:*}/checkpoints/last.pt"
  done
  if [ "$GOLDEN" = 1 ]; then  # golden parity on the device, beside the training (it needs the GPU for seconds)
    REENACT_SHARED="$(realpath "$BUNDLE")/shared" REENACT_TEST_DEVICE=$DEV timeout 120 python3 -m pytest -q \
      -p no:cacheprovider -o addopts="" tests/test_models_golden.py >"$LOGS/golden-$DEV.log" 2>&1 &
    jobs_started=($!)
  fi
fi

phase() {  # ARM FLAGS TAG SECONDS LR [--no-amp]
  local run="$RUNS/$1" minutes; minutes=$(python3 -c "print($4 * $SCALE / 60)")
  # shellcheck disable=SC2046  # FLAGS are split on commas on purpose
  timeout $(( $4 + 90 )) python3 -m reenact_app.cli train --config "$BUNDLE/gpu.yaml" --data "$DATA" --out "$run" \
    --resume --device "$DEV" --stop-after "$minutes" --lr "$5" --workers "$workers" $(tr , ' ' <<<"$2") "${@:6}" \
    >>"$LOGS/$1.log" 2>&1
  local rc=$?
  [ -f "$run/final.safetensors" ] && mv "$run/final.safetensors" "$OUT/$1-$3.safetensors"
  cp "$run/metrics.csv" "$LOGS/$1-metrics.csv" 2>/dev/null
  echo "== $1 phase $3 rc=$rc $(date -u +%T)"; return $rc
}
arm() {  # NAME FLAGS: its phases in order; one retry without bf16 autocast if a phase fails
  local amp=()
  for spec in $PHASES; do
    IFS=: read -r tag secs lr <<<"$spec"
    phase "$1" "$2" "$tag" "$secs" "$lr" "${amp[@]}" || { [ ${#amp[@]} = 0 ] && echo "$1: retrying without bf16" \
      && amp=(--no-amp) && phase "$1" "$2" "$tag" "$secs" "$lr" "${amp[@]}"; }
  done
}
for spec in "${arms[@]}"; do arm "${spec%%:*}" "${spec#*:}" & jobs_started+=($!); done
wait "${jobs_started[@]}"  # not a bare `wait`: that would also wait for the log's tee, forever

first="${arms[0]%%:*}"
for spec in "${arms[@]}"; do
  last=$(ls "$RUNS/${spec%%:*}/samples" 2>/dev/null | tail -1)
  [ -n "$last" ] && cp "$RUNS/${spec%%:*}/samples/$last" "$LOGS/${spec%%:*}-sample.png"
done
# The resumable state, small enough to come back (16 MiB per file): the next lease continues from it.
python3 -m training.transport slim --state "$RUNS/$first/checkpoints/last.pt" --out "$OUT/$first-last-bf16.pt.gz"

if [ "$DEV" = cuda ] && [ "$BENCH" = 1 ]; then
  echo "== benchmark (eager fp32 CUDA baseline, same run)"
  timeout 100 python3 -m reenact_app.cli bench --preset paper-rt --preset fomm-vox256 --engine torch-cuda \
    --baseline-device cuda --frames 40 --no-memory --json "$LOGS/bench.json" 2>&1 | tail -8
fi
[ -f "$LOGS/golden-$DEV.log" ] && echo "== golden parity on $DEV: $(tail -1 "$LOGS/golden-$DEV.log")"
date -u
tar -C "$LOGS" -czf "$OUT/logs.tar.gz" .
