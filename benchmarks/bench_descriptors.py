"""Descriptor libraries by measurement: key and tempo accuracy against known ground truth, and speed.

    PYTHONPATH=. python benchmarks/bench_descriptors.py --music21-cache cache/music21 \\
        --output docs/results/descriptors.json

Ground truth: the bundled corpus' small size rendered by FluidSynth (each 15-s clip's key from music21's
Krumhansl-Schmuckler analysis of the notes it plays after transposition, and its rendered tempo), and the 28
tracks of `immich-memories-music` (tempo and key from the prompt that generated each, in its LICENSE-MUSIC).
Every clip is read once through the one audio path (`audio_music_clip.load_waveform`, mono) at each rate asked
for, and every candidate measures the same waveform in this one process.

Scores: key: MIREX weighted score (mir_eval: 1 same key, 0.5 a fifth above, 0.3 relative, 0.2 parallel);
tempo: Acc1 (within 4 %) and Acc2 (within 4 % of the tempo or of x2, x1/2, x3, x1/3 of it); speed: seconds of
audio per second of compute (x real time), per descriptor, with warm-up calls excluded (numba compiles once
per process).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from audio_music_clip import load_waveform
from music_clip_data import descriptors as d

TEMPO_TOLERANCE = 0.04
OCTAVE_FACTORS = (1.0, 2.0, 0.5, 3.0, 1 / 3)


def music21_truth(cache: Path, size: str) -> list[dict[str, Any]]:
    from music_clip_data.sources.music21_corpus import Music21Source

    tracks = list(Music21Source(size, cache, workers=2, seed=0, progress=False))
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


def librosa_candidate(wave: np.ndarray, sr: int) -> tuple[dict, dict]:
    """The production module's measurements, timed piece by piece."""
    import librosa

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    env = librosa.onset.onset_strength(y=wave, sr=sr, hop_length=d.HOP)
    times["onset_envelope"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tempo = float(librosa.feature.tempo(onset_envelope=env, sr=sr, hop_length=d.HOP)[0])
    times["tempo"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    key = d._key(wave, sr)
    times["key"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    lufs, lra = d._loudness(wave, sr)
    times["loudness+range"] = time.perf_counter() - t0
    return {"tempo_bpm": tempo, "key": key, "loudness_lufs": lufs, "dynamic_range_db": lra}, times


def essentia_candidate(wave: np.ndarray, sr: int) -> tuple[dict, dict]:
    """essentia's standard algorithms at the same rate (KeyExtractor, PercivalBpmEstimator, LoudnessEBUR128)."""
    import essentia
    import essentia.standard as es

    essentia.log.infoActive = False
    wave = wave.astype(np.float32)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    tempo = float(es.PercivalBpmEstimator(sampleRate=sr)(wave))
    times["tempo"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tonic, mode, _ = es.KeyExtractor(sampleRate=sr, profileType="bgate")(wave)
    times["key"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    # BS.1770 mono: one channel weighted 1 (a mono signal copied to both channels would read 3 dB louder).
    stereo = np.stack([wave, np.zeros_like(wave)], axis=1)
    _, _, lufs, lra = es.LoudnessEBUR128(sampleRate=sr)(stereo)
    times["loudness+range"] = time.perf_counter() - t0
    key = f"{tonic} {mode}"
    return {"tempo_bpm": tempo, "key": key, "loudness_lufs": float(lufs), "dynamic_range_db": float(lra)}, times


CANDIDATES: dict[str, Callable[[np.ndarray, int], tuple[dict, dict]]] = {
    "librosa+pyloudnorm": librosa_candidate,
    "essentia": essentia_candidate,
}


def tempo_hits(estimate: float, truth: float) -> tuple[bool, bool]:
    """(Acc1, Acc2) for one clip."""
    close = [abs(estimate - truth * f) <= TEMPO_TOLERANCE * truth * f for f in OCTAVE_FACTORS]
    return close[0], any(close)


def score(rows: list[dict]) -> dict[str, Any]:
    import mir_eval

    keys = [mir_eval.key.weighted_score(r["truth_key"], r["key"]) if r["key"] else 0.0 for r in rows]
    hits = np.array([tempo_hits(r["tempo_bpm"], r["truth_bpm"]) for r in rows])
    seconds = sum(r["seconds"] for r in rows)
    per_part = {part: sum(r["times"][part] for r in rows) for part in rows[0]["times"]}
    return {
        "clips": len(rows),
        "key_mirex": round(float(np.mean(keys)), 3),
        "key_exact": round(float(np.mean([k == 1.0 for k in keys])), 3),
        "tempo_acc1": round(float(hits[:, 0].mean()), 3),
        "tempo_acc2": round(float(hits[:, 1].mean()), 3),
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
            print(name, rate, {k: v for k, v in results.items() if k.startswith(f"{name} @ {rate}")}, flush=True)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--music21-cache", type=Path, default=Path("cache/music21"))
    p.add_argument("--size", default="small", choices=["small", "quick", "full"])
    p.add_argument("--rates", type=int, nargs="+", default=[16000, 44100])
    p.add_argument("--output", type=Path)
    args = p.parse_args()
    truth = music21_truth(args.music21_cache, args.size) + immich_truth()
    started = time.perf_counter()
    results = run(truth, args.rates)
    report = {
        "command": "PYTHONPATH=. python benchmarks/bench_descriptors.py --music21-cache cache/music21 "
        "--output docs/results/descriptors.json",
        "machine": f"{platform.machine()}, {platform.python_version()}; speeds are one process, one thread",
        "ground_truth": {"music21": f"{args.size} renders, 15-s clips", "immich": "28 generated tracks, ~32 s"},
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
