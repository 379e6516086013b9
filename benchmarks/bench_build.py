"""Build throughput (clips/s) with 1 and N processes on the 28 real immich tracks, cold cache each time.

    python benchmarks/bench_build.py                 # 1 vs 2 processes, all 28 tracks (~32 s each)
    python benchmarks/bench_build.py --procs 1 2 4 --max-seconds 10

Each run is a full `build_dataset.build` (decode + log-mel + FLAC + captions by template + Parquet + card) into a
fresh folder, after warm-up builds that load the libraries and start the workers' fork server (a one-time
cost per process, ~4 s of CPU), so every run pays the same costs. Prints clips/s
for the whole build and for the parallel decode stage, and the speed-up against the 1-process run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import build_dataset  # noqa: E402


def run(out: Path, procs: int, max_seconds: float | None) -> build_dataset.BuildSummary:
    argv = ["--source", "immich", "--output", str(out), "--num-proc", str(procs)]
    if max_seconds:
        argv += ["--max-seconds", str(max_seconds)]
    return build_dataset.build(build_dataset.parse_args(argv))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--max-seconds", type=float, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_build-") as tmp:
        run(Path(tmp) / "warmup", 1, 1.0)  # imports, torchcodec/FFmpeg and mel kernels loaded once
        # The fork server the workers come from starts once per process (it imports torch + transformers:
        # ~4 s of CPU); start it here so every run below pays only its own work.
        run(Path(tmp) / "warmup-pool", max(args.procs), 1.0)
        rows = []
        for procs in args.procs:
            summary = asdict(run(Path(tmp) / f"p{procs}", procs, args.max_seconds))
            t = summary["timings_s"]
            clips = summary["kept"]
            rows.append((procs, clips, t["total"], clips / t["total"], clips / t["decode"]))
    base = rows[0]
    print(f"\nimmich tracks, max_seconds={args.max_seconds}, cpu_count={os.cpu_count()}")
    print(
        f"{'procs':>5} {'clips':>5} {'total s':>8} {'build clips/s':>13} {'decode clips/s':>14} {'speed-up':>8}"
    )
    for procs, clips, total, build_rate, decode_rate in rows:
        print(
            f"{procs:>5} {clips:>5} {total:>8.1f} {build_rate:>13.2f} {decode_rate:>14.2f} {build_rate / base[3]:>7.2f}x"
        )


if __name__ == "__main__":
    main()
