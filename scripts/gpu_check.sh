#!/usr/bin/env bash
# GPU check: pretrain + finetune + evaluate through the training loop on CUDA (bf16 and fp32) and on CPU (fp32),
# per-epoch losses compared within stated tolerances, throughput printed (scripts/gpu_check.py). Under 5 minutes.
#
#   scripts/gpu_check.sh prepare [DATASET]  here (network, the project's venv): the wheels the check needs beyond
#                                           torch, and with DATASET a subset of its stored mels, into .gpu_check/
#                                           (git-ignored; about 55 MiB, carried to the GPU machine)
#   scripts/gpu_check.sh [--cpu-only]       on the GPU machine (its own python3 + torch, no network): installs the
#                                           carried wheels into .gpu_check/site if transformers/accelerate are
#                                           missing, then runs the check; --cpu-only is the dry run anywhere
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
CHECK=.gpu_check

if [[ "${1:-}" == prepare ]]; then
  # Everything transformers, accelerate, huggingface_hub and soxr import, for CPython 3.12 on x86-64 Linux, at
  # the versions this project runs with (torch and its own dependencies are the machine's).
  mapfile -t wheels < <("$PYTHON" scripts/gpu_check_wheels.py)
  mkdir -p "$CHECK/wheels"
  "$PYTHON" -m pip download --quiet --dest "$CHECK/wheels" --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp --abi cp312 --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any "${wheels[@]}"
  if [[ -n "${2:-}" ]]; then
    "$PYTHON" scripts/gpu_check.py --write-mels "$2" "$CHECK/mels.npz"
  fi
  du -sh "$CHECK"
  exit 0
fi

if ! "$PYTHON" -c "import transformers, accelerate, huggingface_hub, safetensors, soxr" 2>/dev/null; then
  # A wheel is a zip of the installed files and their metadata: unpacking them is an install that needs no pip.
  "$PYTHON" -c "import glob, sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in glob.glob(sys.argv[2] + '/*.whl')]" \
    "$CHECK/site" "$CHECK/wheels"
  export PYTHONPATH="$PWD/$CHECK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
mels=()
if [[ -f "$CHECK/mels.npz" ]]; then
  mels=(--mels "$CHECK/mels.npz")
fi
exec "$PYTHON" scripts/gpu_check.py "${mels[@]}" "$@"
