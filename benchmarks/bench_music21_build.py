"""Benchmark the music21 corpus build: wall time and clips/s per stage (parse, MIDI, render, finish).

    python benchmarks/bench_music21_build.py --size quick --workers 2 --cache /tmp/m21bench

Stage times are summed worker seconds (CPU-side, across processes); clips/s per stage divides the clip
count by that stage's worker seconds (finish = loudness normalisation, FLAC, key analysis), so it is the rate one worker sustains. A cached rerun renders nothing
and measures only planning and reading the manifest (the resume path).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from music_clip_data.sources.music21_corpus import Music21Source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="quick", choices=["small", "quick", "full"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/m21bench"))
    parser.add_argument("--keep", action="store_true", help="reuse an existing cache (measure resume)")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    if not args.keep:
        shutil.rmtree(args.cache, ignore_errors=True)
    t0 = time.perf_counter()
    source = Music21Source(args.size, args.cache, workers=args.workers, seed=args.seed)
    n = sum(1 for _ in source)
    wall = time.perf_counter() - t0
    summary = source.summary()
    stages = summary["stage_cpu_s"]
    print(
        f"size={args.size} workers={args.workers} clips={n} wall={wall:.1f}s ({n / wall:.2f} clips/s overall)"
    )
    for stage in ("parse_s", "midi_s", "render_s", "finish_s"):
        secs = stages.get(stage, 0.0)
        rate = n / secs if secs else float("inf")
        print(f"  {stage[:-2]:<7} {secs:8.1f} worker-s  {rate:8.2f} clips/s per worker")
    print(json.dumps({k: v for k, v in summary.items() if k != "stage_cpu_s"}, indent=1))
    print(f"failures: {len(source.failures)}")
    for f in source.failures[:10]:
        print("  ", f)
    if args.json:
        args.json.write_text(json.dumps({**summary, "wall_total_s": round(wall, 1)}, indent=1))


if __name__ == "__main__":
    main()
