#!/usr/bin/env bash
# The test command of the README (and of CI): set up (cached), lint, then the default test run.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup.sh
VENV="${MUSICCLIP_VENV:-$HOME/.cache/musicclip/venv}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
"$VENV/bin/ruff" check .
"$VENV/bin/python" -m pytest -m "not slow" -q --durations=15 "$@"
