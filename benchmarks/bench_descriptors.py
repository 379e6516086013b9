"""Descriptor libraries by measurement: key and tempo accuracy against known ground truth, and speed.

    PYTHONPATH=. python benchmarks/bench_descriptors.py --music21-cache cache/music21 --rates 16000 44100 \\
        --limit 40 --output docs/results/descriptors.json

Ground truth: the bundled corpus' small size rendered by FluidSynth (each 15-s clip's key from music21's
Krumhansl-Schmuckler analysis of the notes it plays after transposition, and its rendered tempo), and the 28
tracks of `immich-memories-music` (tempo and key from the prompt that generated each, in its LICENSE-MUSIC).
Every clip is read once through the one audio path (`audio_music_clip.load_waveform`, mono) at each rate asked
for, and every candidate measures the same waveform in this one process. `--rates 16000 44100` asks whether the model's
16 kHz loses accuracy (essentia's tempo and key default to 44.1 kHz). The librosa alternative needs the test
extras (pyloudnorm, mir_eval).

Scores: key: MIREX weighted score (mir_eval: 1 same key, 0.5 a fifth above, 0.3 relative, 0.2 parallel);
tempo: Acc1 (within 4 %) and Acc2 (within 4 % of the tempo or of x2, x1/2, x3, x1/3 of it); speed: seconds of
audio per second of compute (x real time), per descriptor, with warm-up calls excluded (numba compiles once
per process).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from audio_music_clip import load_waveform
from music_clip_data import descriptors as d

TEMPO_TOLERANCE = 0.04
OCTAVE_FACTORS = (1.0, 2.0, 0.5, 3.0, 1 / 3)


def music21_truth(cache: Path, size: str, limit: int | None) -> list[dict[str, Any]]:
    from music_clip_data.sources.music21_corpus import Music21Source

    tracks = list(Music21Source(size, cache, workers=2, seed=0, progress=False))
    if limit and len(tracks) > limit:  # evenly spread over the (piece-ordered) clips
        tracks = [tracks[i] for i in np.linspace(0, len(tracks) - 1, limit).round().astype(int)]
    return [
        {
            "set": "music21",
            "path": t.audio_path,
            "bpm": float(t.metadata["tempo_bpm"]),
            "key": t.metadata["facts"]["key_mode"].replace(" flat", "b"),
        }
        for t in tracks
        if t.metadata["facts"].get("key_mode")
    ]


def immich_truth() -> list[dict[str, Any]]:
    from music_clip_data.sources.immich import per_track_facts, tracks_dir

    facts = per_track_facts()
    return [
        {"set": "immich", "path": p, "bpm": float(facts[p.name]["bpm"]), "key": facts[p.name]["key"]}
        for p in sorted(tracks_dir().glob("*/*.opus"))
        if p.name in facts
    ]


def production_candidate(wave: np.ndarray, sr: int) -> tuple[dict, dict]:
    """`music_clip_data.descriptors` as the builder runs it (essentia tempo, key, loudness; librosa onsets,
    brightness), timed measure by measure."""
    values: dict[str, Any] = {}
    times: dict[str, float] = {}
    for name, measure in d.MEASURES.items():
        t0 = time.perf_counter()
        values.update(measure(wave, sr))
        times[name] = time.perf_counter() - t0
    return values, times


def librosa_candidate(wave: np.ndarray, sr: int) -> tuple[dict, dict]:
    """The alternative without essentia: librosa tempo (onset autocorrelation, log-normal prior at 120 BPM),
    mean CQT chroma against music21's Krumhansl-Schmuckler profiles, pyloudnorm integrated loudness and an LRA
    from pyloudnorm on 3-s windows every second (Tech 3342 gates)."""
    import librosa
    import pyloudnorm
    from music21.analysis.discrete import KrumhanslSchmuckler

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    env = librosa.onset.onset_strength(y=wave, sr=sr, hop_length=d.ONSET_HOP)
    tempo = float(librosa.feature.tempo(onset_envelope=env, sr=sr, hop_length=d.ONSET_HOP)[0])
    times["tempo"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    chroma = librosa.feature.chroma_cqt(y=wave, sr=sr, hop_length=2048).mean(axis=1)
    ks = KrumhanslSchmuckler()
    profiles = np.array([np.roll(ks.getWeights(m), t) for m in ("major", "minor") for t in range(12)])
    best = int(np.argmax([np.corrcoef(chroma, row)[0, 1] for row in profiles]))
    key = f"{PITCHES[best % 12]} {'major' if best < 12 else 'minor'}"
    times["key"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    meter = pyloudnorm.Meter(sr)
    lufs = meter.integrated_loudness(wave)
    short = np.array(
        [meter.integrated_loudness(wave[s : s + 3 * sr]) for s in range(0, wave.size - 3 * sr + 1, sr)]
    )
    short = short[np.isfinite(short) & (short > -70)]
    short = short[short > 10 * np.log10(np.mean(10 ** (short / 10))) - 20] if short.size else short
    lra = float(np.subtract(*np.percentile(short, [95, 10]))) if short.size else None
    times["loudness+range"] = time.perf_counter() - t0
    return {"tempo_bpm": tempo, "key": key, "loudness_lufs": lufs, "dynamic_range_db": lra}, times


def essentia_key_candidate(profile: str) -> Callable[[np.ndarray, int], tuple[dict, dict]]:
    """essentia's KeyExtractor with another key profile (the production one is `descriptors.KEY_PROFILE`)."""

    def measure(wave: np.ndarray, sr: int) -> tuple[dict, dict]:
        t0 = time.perf_counter()
        tonic, mode, _ = d._essentia().KeyExtractor(sampleRate=sr, profileType=profile)(wave)
        return {"key": f"{tonic} {mode}", "tempo_bpm": None}, {"key": time.perf_counter() - t0}

    return measure


PITCHES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
CANDIDATES: dict[str, Callable[[np.ndarray, int], tuple[dict, dict]]] = {
    "production (essentia + librosa)": production_candidate,
    "librosa + pyloudnorm": librosa_candidate,
    **{f"essentia key profile {p}": essentia_key_candidate(p) for p in ("krumhansl", "temperley", "edma")},
}


def tempo_hits(estimate: float, truth: float) -> tuple[bool, bool]:
    """(Acc1, Acc2) for one clip."""
    close = [abs(estimate - truth * f) <= TEMPO_TOLERANCE * truth * f for f in OCTAVE_FACTORS]
    return close[0], any(close)


def score(rows: list[dict]) -> dict[str, Any]:
    import mir_eval

    keys = [mir_eval.key.weighted_score(r["truth_key"], r["key"]) if r["key"] else 0.0 for r in rows]
    seconds = sum(r["seconds"] for r in rows)
    per_part = {part: sum(r["times"][part] for r in rows) for part in rows[0]["times"]}
    out = {
        "clips": len(rows),
        "key_mirex": round(float(np.mean(keys)), 3),
        "key_exact": round(float(np.mean([k == 1.0 for k in keys])), 3),
    }
    if rows[0]["tempo_bpm"] is not None:
        hits = np.array([tempo_hits(r["tempo_bpm"] or 0.0, r["truth_bpm"]) for r in rows])
        out |= {
            "tempo_acc1": round(float(hits[:, 0].mean()), 3),
            "tempo_acc2": round(float(hits[:, 1].mean()), 3),
        }
    return out | {
        "x_real_time": round(seconds / sum(per_part.values()), 1),
        "x_real_time_per_part": {k: round(seconds / v, 1) for k, v in per_part.items()},
    }


def run(truth: list[dict], rates: list[int]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for rate in rates:
        waves = [load_waveform(str(t["path"]), target_rate=rate) for t in truth]
        for name, candidate in CANDIDATES.items():
            candidate(waves[0][: rate * 5], rate)  # warm-up: imports, numba compilation
            rows = []
            for t, wave in zip(truth, waves, strict=True):
                values, times = candidate(wave, rate)
                rows.append({**values, "times": times, "seconds": wave.size / rate,
                             "truth_key": t["key"], "truth_bpm": t["bpm"], "set": t["set"]})  # fmt: skip
            for subset in sorted({r["set"] for r in rows}):
                results[f"{name} @ {rate} Hz / {subset}"] = score([r for r in rows if r["set"] == subset])
            print(
                name, rate, {k: v for k, v in results.items() if k.startswith(f"{name} @ {rate}")}, flush=True
            )
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--music21-cache", type=Path, default=Path("cache/music21"))
    p.add_argument("--size", default="small", choices=["small", "quick", "full"])
    p.add_argument("--rates", type=int, nargs="+", default=[16000, 44100])
    p.add_argument("--limit", type=int, default=40, help="music21 clips measured (spread evenly); 0: all")
    p.add_argument("--output", type=Path)
    args = p.parse_args()
    truth = music21_truth(args.music21_cache, args.size, args.limit) + immich_truth()
    started = time.perf_counter()
    results = run(truth, args.rates)
    report = {
        "command": "PYTHONPATH=. python benchmarks/bench_descriptors.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {platform.python_version()}; speeds are one process, one thread",
        "ground_truth": {
            "music21": f"{args.size} renders, 15-s clips",
            "immich": "28 generated tracks, ~32 s",
        },
        "results": results,
        "bench_seconds": round(time.perf_counter() - started, 1),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
