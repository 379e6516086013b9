"""FluidSynth rendering with a time limit and an output-size cap, and loudness normalisation."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
SOUNDFONT_DIR = Path("/usr/share/sounds/sf2")
SOUNDFONTS = {"FluidR3_GM": "FluidR3_GM.sf2", "TimGM6mb": "TimGM6mb.sf2"}
TARGET_LUFS = -23.0  # EBU R 128 programme loudness
INSTALL_HINT = "apt-get install -y --no-install-recommends fluidsynth fluid-soundfont-gm timgm6mb-soundfont"


class RenderError(RuntimeError):
    """A render that failed, timed out or grew past its size cap."""


def soundfont_path(name: str) -> Path:
    return SOUNDFONT_DIR / SOUNDFONTS[name]


def check_tools() -> None:
    """Fail early, naming the fix, when the synthesizer or a SoundFont is missing."""
    missing = []
    if shutil.which("fluidsynth") is None:
        missing.append("the `fluidsynth` program")
    missing += [f"the SoundFont {soundfont_path(n)}" for n in SOUNDFONTS if not soundfont_path(n).is_file()]
    if missing:
        raise RuntimeError(
            f"The music21 source renders scores with FluidSynth, but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing. Install with:\n  {INSTALL_HINT}"
        )


def render_midi(midi_path: Path, wav_path: Path, font: str, timeout_s: float, max_bytes: int) -> None:
    """Render one MIDI file to a 16 kHz WAV; raise RenderError past `timeout_s` or `max_bytes` of output.

    The output file is watched while FluidSynth runs (RLIMIT_FSIZE kills fluidsynth 2.3 before it writes
    anything, so the cap is enforced by polling); a stuck note can otherwise fill the disk.
    """
    cmd = ["fluidsynth", "-ni", "-q", "-F", str(wav_path), "-r", str(SAMPLE_RATE), "-g", "0.5",
           str(soundfont_path(font)), str(midi_path)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout_s
    reason = ""
    while proc.poll() is None:
        if wav_path.exists() and wav_path.stat().st_size > max_bytes:
            reason = f"fluidsynth output exceeded the {max_bytes} byte cap"
        elif time.monotonic() > deadline:
            reason = f"fluidsynth timed out after {timeout_s:.0f} s"
        if reason:
            proc.kill()
            proc.wait()
            wav_path.unlink(missing_ok=True)
            raise RenderError(reason)
        time.sleep(0.05)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RenderError(f"fluidsynth exited {proc.returncode}: {stderr[-300:]}")
    if not wav_path.exists():
        raise RenderError("fluidsynth wrote no audio")


def loudness(mono: np.ndarray) -> float:
    """Integrated loudness (ITU-R BS.1770, LUFS) with torchaudio."""
    import torch
    import torchaudio.functional as F

    torch.set_num_threads(1)  # one process per core already; more threads only oversubscribe
    value = float(F.loudness(torch.from_numpy(mono.astype(np.float32))[None], SAMPLE_RATE))
    return value if np.isfinite(value) else -120.0


def normalise(mono: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Scale a clip to TARGET_LUFS (peak-limited to 0.99) so loudness cannot tell the classes apart.

    Returns the clip, its loudness before and after.
    """
    before = loudness(mono)
    gain = 10 ** ((TARGET_LUFS - before) / 20)
    peak = float(np.max(np.abs(mono))) * gain
    if peak > 0.99:
        gain *= 0.99 / peak
    out = (mono * gain).astype(np.float32)
    # BS.1770 loudness scales exactly with gain (its gates are relative), so no second measurement is needed.
    return out, before, before + 20 * float(np.log10(gain))
