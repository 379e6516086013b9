"""Cost of odd sampling rates on the one audio path: 10 s of stereo samples → 16 kHz mono (`load_waveform`: mean
downmix, soxr resampling, clipping, acceptance checks), each rate against 44.1 kHz in the same process.

    python benchmarks/bench_resample.py [--seconds 10] [--repeats 5]

Prime and near-common rates (44,101 Hz, 96,001 Hz) share no large factor with 16 kHz; a gcd-based polyphase
resampler builds a kernel the size of the rate there, soxr does not.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from audio_music_clip import load_waveform

RATES = [44100, 8000, 22050, 48000, 96000, 44101, 96001, 192000, 384000, 768000]


def best_time(wave: np.ndarray, rate: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        load_waveform(wave, rate)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results = {}
    for rate in RATES:
        wave = rng.uniform(-0.5, 0.5, (2, int(rate * args.seconds))).astype(np.float32)
        results[rate] = best_time(wave, rate, args.repeats)
    base = results[RATES[0]]
    print(f"{args.seconds:g} s of stereo float32 → 16 kHz mono, best of {args.repeats}:")
    for rate, seconds in results.items():
        print(f"  {rate:>7,d} Hz  {seconds * 1000:8.1f} ms  {seconds / base:6.2f}x the 44,100 Hz time")


if __name__ == "__main__":
    main()
