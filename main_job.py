"""The main job: the thesis' experiment on the bundled corpus, from nothing to a running Space.

    python main_job.py                  # quick profile (~20 min on 2 cores after set-up), then serves the Space
    python main_job.py --profile full   # the whole protocol: every objective, every N, three seeds
    python main_job.py --no-serve       # stop after the report

Every stage is one of the project's own commands (printed before it runs), so a user can stop after any stage
and go on by hand or with their own data. Every stage resumes or skips finished work, so a second run is fast.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from music_clip_train.budgets import PRETRAIN_EXAMPLES

HERE = Path(__file__).resolve().parent

# The objective the main job pretrains first, and the Space's model: the one with the highest mean test macro-F1
# over N in Table 6 on the full build (README, "Result"). IS treats each caption sentence as its own positive.
START_OBJECTIVE = "independent"
# The bundled corpus is 15-s clips: a 15-s CNN window (235 frames) instead of the thesis' 4.5 minutes, which would
# be 94 % padding and 18x the CNN work per clip.
WINDOW_SAMPLES = "240000"
# Few-shot cells run at a time, one thread each on 2 cores: 1.11x one 2-thread cell at a time on an idle machine, and
# far steadier on a busy one (README, benchmarks: bench_processes.py).
SWEEP_JOBS = max(1, min(8, os.cpu_count() or 1))
ALL_OBJECTIVES = ["ntxent", "independent", "supcon", "triplet", "matching"]


@dataclass(frozen=True)
class Profile:
    size: str  # build_dataset.py --size
    objectives: list[str]  # pretrained objectives in the sweep (plus the un-pretrained baseline)
    sizes: list[int]
    seeds: list[int]
    sweep_profile: str  # train.py sweep --profile
    min_free_gb: float


PROFILES = {
    "smoke": Profile("small", [START_OBJECTIVE], [16], [0], "quick", 1),
    "quick": Profile("quick", [START_OBJECTIVE], [48, 160, 400, 800], [0, 1], "quick", 4),
    # The whole protocol; "cpu" = the thesis schedule capped at 4,000 training examples per run (train.py sweep).
    "full": Profile("full", ALL_OBJECTIVES, [48, 160, 400, 800, 1600, 3200], [0, 1, 2], "cpu", 10),
}


def run(stage: str, command: list[str], lock: JobLock) -> None:
    printable = " ".join(command).replace(sys.executable, "python")
    print(f"\n==> {stage}: {printable}", flush=True)
    start = time.perf_counter()
    # The stage inherits the lock's file descriptor: the flock belongs to the open file, so it stays held while
    # the stage runs even if this process is killed (-9), and a second job is refused until the stage ends.
    lock.record(stage, None)  # named before the stage exists, so a holder is never anonymous
    with subprocess.Popen(command, cwd=HERE, pass_fds=(lock.fd,)) as child:
        lock.record(stage, child.pid)
        child.wait()
    if child.returncode != 0:
        sys.exit(
            f"main job: stage '{stage}' failed (exit {child.returncode}); fix the cause and re-run: finished "
            "work is kept and skipped"
        )
    print(f"<== {stage}: done in {time.perf_counter() - start:.0f} s", flush=True)


class JobLock:
    """An exclusive flock on RUNS/.main_job.lock; the file names the holder (pid, stage, stage pid)."""

    def __init__(self, path: Path) -> None:
        # O_RDWR without O_TRUNC: a refused job must not erase the holder's record before reading it.
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self.path = path
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self.holder()
            os.close(self.fd)
            sys.exit(
                f"main job: another main job is running in {path.parent} ({holder}); wait for it or use another "
                "--root"
            )
        self.record(None, None)

    def holder(self) -> str:
        try:
            info = json.loads(os.pread(self.fd, 4096, 0) or b"{}")
        except (OSError, ValueError):
            return "holder unknown"
        if not isinstance(info, dict):
            return "holder unknown"
        stage = f", stage '{info['stage']}' pid {info.get('stage_pid') or '?'}" if info.get("stage") else ""
        return f"main job pid {info.get('pid', '?')}{stage}"

    def record(self, stage: str | None, stage_pid: int | None) -> None:
        data = json.dumps({"pid": os.getpid(), "stage": stage, "stage_pid": stage_pid}).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def close(self) -> None:
        os.close(self.fd)


def check_disk(path: Path, need_gb: float) -> None:
    path.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(path).free / 1e9
    if free_gb < need_gb:
        sys.exit(
            f"main job: only {free_gb:.1f} GB free under {path}; this profile needs about {need_gb:g} GB. "
            "Free some space or pass --root on a larger disk."
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument(
        "--root", type=Path, default=HERE, help="where data/ and runs/ go (default: the repo)"
    )
    parser.add_argument(
        "--serve",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start the Space at the end (default: yes)",
    )
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args()
    profile = PROFILES[args.profile]
    python = sys.executable

    data = args.root / "data" / f"music21-{profile.size}"
    runs = args.root / "runs" / args.profile
    pretrained = runs / "sweep" / "pretrained"  # where the sweep looks for (and puts) its checkpoints
    check_disk(args.root, profile.min_free_gb)
    runs.mkdir(parents=True, exist_ok=True)

    # Two main jobs in one folder would write the same files: refuse the second instead of corrupting both.
    lock = JobLock(runs / ".main_job.lock")  # held for the whole run, and by each stage while it runs

    start = time.perf_counter()
    run(
        "1/5 build the bundled corpus",
        [python, "build_dataset.py", "--source", "music21", "--size", profile.size, "--output", str(data)],
        lock,
    )
    run(
        f"2/5 pretrain ({START_OBJECTIVE})",
        [
            python,
            "train.py",
            "pretrain",
            "--dataset",
            str(data),
            "--objective",
            START_OBJECTIVE,
            "--output",
            str(pretrained / START_OBJECTIVE),
            "--window-samples",
            WINDOW_SAMPLES,
            "--resume",
            *epochs_flag(args.profile),
            *pretrain_budget_flag(profile.sweep_profile),
        ],
        lock,
    )
    run(
        "3/5 few-shot sweep",
        [
            python,
            "train.py",
            "sweep",
            "--dataset",
            str(data),
            "--objectives",
            "none",
            *profile.objectives,
            "--sizes",
            *map(str, profile.sizes),
            "--seeds",
            *map(str, profile.seeds),
            "--profile",
            profile.sweep_profile,
            "--output",
            str(runs / "sweep"),  # pretrains the objectives stage 2 did not, into sweep/pretrained/
            "--window-samples",
            WINDOW_SAMPLES,
            "--jobs",
            str(SWEEP_JOBS),
            *(["--pretrain-epochs", "1", "--finetune-epochs", "1"] if args.profile == "smoke" else []),
        ],
        lock,
    )
    run(
        "4/5 finetune the Space's classifier on the whole training split",
        [
            python,
            "train.py",
            "finetune",
            "--dataset",
            str(data),
            "--init",
            str(pretrained / START_OBJECTIVE),
            "--output",
            str(runs / "classifier"),
            "--resume",
            *epochs_flag(args.profile),
        ],
        lock,
    )
    run(
        "5/5 evaluate retrieval and zero-shot genres",
        [
            python,
            "train.py",
            "evaluate",
            "--model",
            str(pretrained / START_OBJECTIVE),
            "--dataset",
            str(data),
        ],
        lock,
    )
    run(
        "then: warm the Space's library cache (audio + caption embeddings, FAISS), so it starts without embedding",
        [
            python,
            "space/app.py",
            "--model",
            str(pretrained / START_OBJECTIVE),
            "--library",
            str(data),
            "--warm-library",
        ],
        lock,
    )
    print(
        f"\nmain job: finished in {(time.perf_counter() - start) / 60:.1f} min. Report: {runs / 'sweep'}/README.md "
        f"(table {runs / 'sweep'}/table.md, plots *.png); model {pretrained / START_OBJECTIVE}; classifier "
        f"{runs / 'classifier'}; dataset {data}."
    )
    if args.serve:
        command = [
            python,
            "space/app.py",
            "--model",
            str(pretrained / START_OBJECTIVE),
            "--classifier",
            str(runs / "classifier"),
            "--library",
            str(data),
            "--port",
            str(args.port),
        ]
        print(
            f"\n==> Space: {' '.join(command).replace(python, 'python')}\n    open http://127.0.0.1:{args.port}",
            flush=True,
        )
        lock.close()  # the Space only reads
        subprocess.run(command, cwd=HERE)


def pretrain_budget_flag(sweep_profile: str) -> list[str]:
    # Stage 2 pretrains under the sweep profile's budget, so every objective of the sweep sees the same examples.
    examples = PRETRAIN_EXAMPLES[sweep_profile]
    return ["--max-examples", str(examples)] if examples else []


def epochs_flag(profile_name: str) -> list[str]:
    # The smoke profile (CI) runs one epoch per stage; the others use each command's own defaults.
    return ["--epochs", "1"] if profile_name == "smoke" else []


if __name__ == "__main__":
    main()
