#!/usr/bin/env bash
# Set-up + main job (the README's first command). Pass --profile full for the whole protocol, --no-serve to stop
# after the report. Re-running resumes: finished stages are skipped.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/setup.sh
VENV="${MUSICCLIP_VENV:-$HOME/.cache/musicclip/venv}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" GRADIO_ANALYTICS_ENABLED=False TOKENIZERS_PARALLELISM=false
exec "$VENV/bin/python" main_job.py "$@"
