"""Pretraining steps/s on 1 and 2 CPU processes (same global batch), and a sweep's wall time with --jobs 1 and 2.

    python benchmarks/bench_processes.py --dataset data/music21-quick --pretrained-dir runs/quick/sweep/pretrained

By default the sweep is the quick profile's whole grid (none + SCL, its sizes and seeds).

Each variant is the real CLI in a subprocess (`torchrun --nproc_per_node 2` for two processes); steps/s counts the
training steps only (`step_seconds` in train_results.json: no setup, no evaluation).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from music_clip_common.experiment import CORPUS_WINDOW_SAMPLES, PROFILES  # noqa: E402  (the grid, written once)

QUICK_SIZES = [str(n) for n in PROFILES["quick"].sizes]
QUICK_SEEDS = [str(s) for s in PROFILES["quick"].seeds]


def train_py(args: list[str], processes: int = 1) -> float:
    launcher = [sys.executable]
    env = dict(os.environ)
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
        env["ACCELERATE_USE_CPU"] = "true"
    started = time.perf_counter()
    subprocess.run(
        [*launcher, str(REPO / "train.py"), *args], cwd=REPO, env=env, check=True, capture_output=True
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--pretrained-dir", required=True, help="holds supcon/ (the sweep finetunes from it)")
    parser.add_argument("--global-batch", type=int, default=32)
    parser.add_argument("--window-samples", default=str(CORPUS_WINDOW_SAMPLES))
    parser.add_argument(
        "--sizes", nargs="+", default=QUICK_SIZES, help="sweep sizes (objectives none + supcon)"
    )
    parser.add_argument("--seeds", nargs="+", default=QUICK_SEEDS, help="sweep seeds")
    parser.add_argument("--pretrain-only", action="store_true")
    args = parser.parse_args()
    if not args.pretrain_only and not (Path(args.pretrained_dir) / "supcon").is_dir():
        # The sweep would pretrain it inside the timed --jobs 1 pass and make the ratio meaningless.
        sys.exit(
            f"bench_processes: {args.pretrained_dir}/supcon is missing; make it first with `python train.py "
            f"pretrain --dataset {args.dataset} --objective supcon --output {args.pretrained_dir}/supcon "
            "--window-samples 240000 --max-examples 6000`"
        )
    with tempfile.TemporaryDirectory() as tmp:
        # torchrun gives each process one thread (OMP_NUM_THREADS=1); one process is timed with torch's default
        # threads and with one thread (a loaded machine stalls multi-threaded ops at their barriers).
        for processes, threads in ((1, None), (1, 1), (2, None)):
            out = Path(tmp) / f"pretrain-{processes}-{threads}"
            batch = str(args.global_batch // processes)
            common = ["--objective", "supcon", "--epochs", "1", "--window-samples", args.window_samples]
            thread_flag = ["--threads", str(threads)] if threads else []
            train_py(
                [
                    *thread_flag,
                    "pretrain",
                    "--dataset",
                    args.dataset,
                    "--output",
                    str(out),
                    "--batch-size",
                    batch,
                ]
                + common,
                processes,
            )
            result = json.loads((out / "train_results.json").read_text())
            rate = result["steps"] / result["step_seconds"]
            print(
                f"pretraining, {processes} process(es) x batch {batch}, threads {threads or 'default'}: "
                f"{rate:.3f} steps/s ({result['steps']} steps)",
                flush=True,
            )
        if args.pretrain_only:
            return
        for jobs in (1, 2):
            grid = [
                "--objectives",
                "none",
                "supcon",
                "--sizes",
                *args.sizes,
                "--seeds",
                *args.seeds,
                "--profile",
                "quick",
            ]
            seconds = train_py(
                [
                    "sweep",
                    "--dataset",
                    args.dataset,
                    "--output",
                    str(Path(tmp) / f"sweep-{jobs}"),
                    *grid,
                    "--pretrained-dir",
                    args.pretrained_dir,
                    "--window-samples",
                    args.window_samples,
                    "--jobs",
                    str(jobs),
                ]
            )
            print(
                f"sweep, {2 * len(args.sizes) * len(args.seeds)} cells (none + supcon, N {'/'.join(args.sizes)}, "
                f"seeds {'/'.join(args.seeds)}, quick budget), "
                f"--jobs {jobs}: {seconds:.0f} s wall"
            )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
