#!/usr/bin/env bash
# One short GPU lease, used fully: CUDA golden parity, a time-boxed training burst that resumes a CPU run,
# and the GPU benchmark against the eager CUDA baseline. Every result lands in $OUT as it is made, so a
# lease cut short still returns the phases that finished. This is what ran on the H100 in session 3.
#
# Before the lease (here, on the CPU machine):
#   python -m training.transport pack --data /work/prepared/shared256 --out .gpu/data --frame-step 2
#   cp RUN/checkpoints/last.pt .gpu/ckpt/last.pt        # the run to continue (resume keeps Adam's state)
#   cp -r ../shared/reference/fomm .gpu/shared/reference/ ; mkdir -p .gpu/shared/data (for the golden test)
#   cp RUN/config.yaml .gpu/gpu.yaml, then set batch_size, num_workers, lr_milestones: [] for the burst
# On the GPU machine (carry .gpu):
#   OUT=/some/dir bash tools/gpu_session.sh
# Phases are TAG:SECONDS:LR (each resumes the last; each writes TAG.safetensors; at most 3 phases, as a
# lease returns 8 files). Then evaluate the files back on the CPU machine with `reenact evaluate`, publish
# the best, and keep last-bf16.pt.gz: `gunzip -c last-bf16.pt.gz > RUN/checkpoints/last.pt` resumes there.
set -u
cd "$(dirname "$0")/.."
DEV="${DEV:-cuda}"                       # DEV=cpu SCALE=0.05: a local smoke run of the whole script
SCALE="${SCALE:-1}"                      # multiplies every phase's seconds
PHASES="${PHASES:-A1:150:2e-4 A2:120:2e-4 B:90:2e-5}"
BUNDLE="${BUNDLE:-.gpu}"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD" REENACT_CACHE=/tmp/reenact-cache
RUN=/tmp/gpu-session-run; DATA=/tmp/gpu-session-data
exec > >(tee -a "$OUT/run.log") 2>&1

date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
python3 -c "import torch, cv2; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'cv2', cv2.__version__)"
rm -rf "$RUN" "$DATA"; mkdir -p "$RUN/checkpoints"; cp "$BUNDLE/ckpt/last.pt" "$RUN/checkpoints/last.pt"
python3 -m training.transport unpack --bundle "$BUNDLE/data" --out "$DATA" --workers "$(nproc)" || exit 1

echo "== golden parity on $DEV"
REENACT_SHARED="$PWD/$BUNDLE/shared" REENACT_TEST_DEVICE=$DEV timeout 120 \
  python3 -m pytest -q -p no:cacheprovider -o addopts="" tests/test_models_golden.py 2>&1 | tail -3

AMP=""
phase() {  # TAG SECONDS LR
  local minutes; minutes=$(python3 -c "print($2 * $SCALE / 60)")
  timeout $(( $2 + 90 )) python3 -m reenact_app.cli train --config "$BUNDLE/gpu.yaml" --data "$DATA" --out "$RUN" \
    --resume --device "$DEV" --stop-after "$minutes" --lr "$3" $AMP
  local rc=$?
  [ -f "$RUN/final.safetensors" ] && mv "$RUN/final.safetensors" "$OUT/$1.safetensors"
  cp "$RUN/metrics.csv" "$OUT/metrics.csv" 2>/dev/null
  echo "== phase $1 rc=$rc"; return $rc
}
for spec in $PHASES; do
  IFS=: read -r tag secs lr <<<"$spec"
  phase "$tag" "$secs" "$lr" || { [ -z "$AMP" ] && echo "retrying without bf16 autocast" && AMP="--no-amp" \
                                   && phase "$tag" "$secs" "$lr"; }
done
last=$(ls "$RUN/samples" 2>/dev/null | tail -1); [ -n "$last" ] && cp "$RUN/samples/$last" "$OUT/sample.png"
# The resumable state, small enough to come back (16 MiB per file): the next lease continues from it.
python3 -m training.transport slim --state "$RUN/checkpoints/last.pt" --out "$OUT/last-bf16.pt.gz"

if [ "$DEV" = cuda ]; then
  echo "== benchmark (eager fp32 CUDA baseline, same run)"
  timeout 100 python3 -m reenact_app.cli bench --preset paper-rt --preset fomm-vox256 --engine torch-cuda \
    --baseline-device cuda --frames 40 --no-memory --json "$OUT/bench.json" 2>&1 | tail -8
fi
date -u
