#!/usr/bin/env bash
# Idempotent set-up: Debian packages (FFmpeg for decoding, FluidSynth + SoundFonts for the bundled corpus,
# Chromium for the browser test) and a cached virtualenv outside the clone.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MUSICCLIP_VENV:-$HOME/.cache/musicclip/venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3

apt_pkgs=(ffmpeg fluidsynth fluid-soundfont-gm timgm6mb-soundfont chromium)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: run as root, or: sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

stamp_src=$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating virtualenv $VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q -U pip
fi
if [ "$(cat "$VENV/.musicclip-stamp" 2>/dev/null)" != "$stamp_src" ]; then
  echo "setup: installing Python dependencies (first run: a few minutes)"
  "$VENV/bin/pip" install -q -e ".[test]"
  echo "$stamp_src" > "$VENV/.musicclip-stamp"
else
  # The dependencies are cached; point the editable install at this checkout.
  "$VENV/bin/pip" install -q --no-deps -e .
fi
echo "setup: ready ($VENV)"
