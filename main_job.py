"""The main job: the thesis' experiment on the bundled corpus, from nothing to a running Space.

    python main_job.py                  # quick profile (~20 min on 2 cores after set-up), then serves the Space
    python main_job.py --profile full   # the whole protocol: every objective, every N, three seeds
    python main_job.py --no-serve       # stop after the report

Every stage is one of the project's own commands (printed before it runs), so a user can stop after any stage
and go on by hand or with their own data. Every stage resumes or skips finished work, so a second run is fast.
Profiles, budgets, the window and the paths are stated in `music_clip_common/experiment.py`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from music_clip_common.experiment import (
    CORPUS_WINDOW_SAMPLES,
    DEFAULT_PROFILE,
    PROFILES,
    ExperimentPaths,
    Profile,
    experiment_paths,
)
from music_clip_common.files import ExclusiveLock, LockHeld

HERE = Path(__file__).resolve().parent
# Few-shot cells run at a time, one thread each on 2 cores: 1.11x one 2-thread cell at a time on an idle machine, and
# far steadier on a busy one (README, benchmarks: bench_processes.py).
SWEEP_JOBS = max(1, min(8, os.cpu_count() or 1))
LOCK_NAME = ".main_job.lock"


def run(stage: str, command: list[str], lock: ExclusiveLock) -> None:
    printable = " ".join(command).replace(sys.executable, "python")
    print(f"\n==> {stage}: {printable}", flush=True)
    start = time.perf_counter()
    # The stage inherits the lock's file descriptor: the lock belongs to the open file, so it stays held while
    # the stage runs even if this process is killed (-9), and a second job is refused until the stage ends.
    lock.note(stage=stage, stage_pid=None)  # named before the stage exists, so a holder is never anonymous
    with subprocess.Popen(command, cwd=HERE, pass_fds=(lock.fd,)) as child:
        lock.note(stage=stage, stage_pid=child.pid)
        child.wait()
    if child.returncode != 0:
        sys.exit(
            f"main job: stage '{stage}' failed (exit {child.returncode}); fix the cause and re-run: finished "
            "work is kept and skipped"
        )
    print(f"<== {stage}: done in {time.perf_counter() - start:.0f} s", flush=True)


def hold_job_lock(runs: Path) -> ExclusiveLock:
    """Two main jobs in one folder would write the same files: the second is refused, naming the first."""
    lock = ExclusiveLock(runs / LOCK_NAME)
    try:
        return lock.acquire("another main job is running")
    except LockHeld as held:
        info = held.holder
        stage = f", stage '{info['stage']}' pid {info.get('stage_pid') or '?'}" if info.get("stage") else ""
        sys.exit(
            f"main job: another main job is running in {runs} (main job pid {info.get('pid', '?')}{stage}); "
            "wait for it or use another --root"
        )


def check_disk(path: Path, need_gb: float) -> None:
    path.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(path).free / 1e9
    if free_gb < need_gb:
        sys.exit(
            f"main job: only {free_gb:.1f} GB free under {path}; this profile needs about {need_gb:g} GB. "
            "Free some space or pass --root on a larger disk."
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default=DEFAULT_PROFILE)
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
    return parser.parse_args(argv)


def real_music_data(profile: Profile, paths: ExperimentPaths) -> Path | None:
    """Where the real-music source's pretraining part goes, beside the corpus (None: the profile builds none)."""
    return paths.data.parent / f"debian-{profile.size}" if profile.real_music else None


def pretraining_datasets(profile: Profile, paths: ExperimentPaths) -> list[str]:
    """The datasets the sweep pretrains on: the renders and, where built, the real tracks (the few-shot cells
    use the renders' genres only)."""
    return [str(dataset) for dataset in (paths.data, real_music_data(profile, paths)) if dataset]


def space_libraries(profile: Profile, paths: ExperimentPaths) -> list[str]:
    """The Space's library: the renders and, where built, the real tracks (each with its licence and credit)."""
    return [str(library) for library in (paths.data, real_music_data(profile, paths)) if library]


def library_flags(profile: Profile, paths: ExperimentPaths) -> list[str]:
    return [flag for library in space_libraries(profile, paths) for flag in ("--library", library)]


def stages(profile: Profile, paths: ExperimentPaths) -> list[tuple[str, list[str]]]:
    """(name, command) of every stage, numbered. The sweep pretrains every objective under the profile's budget
    (the one place pretraining flags are made), into sweep/pretrained/, where the later stages find the Space's
    model; the last stage embeds the Space's library into its cache, so the Space starts without embedding."""
    from audio_music_clip import TARGET_RATE
    from configuration_music_clip import OBJECTIVES  # the list of objectives lives there (imports torch)

    python, data, real = sys.executable, str(paths.data), str(real_music_data(profile, paths))
    one_epoch = ["--epochs", "1"] if profile.one_epoch else []
    renders, *real_parts = pretraining_datasets(profile, paths)
    sweep = [python, "train.py", "sweep", "--dataset", renders]
    sweep += ["--pretrain-dataset", *real_parts] if real_parts else []
    sweep += ["--output", str(paths.sweep), "--objectives", "none", *(profile.objectives or OBJECTIVES)]
    sweep += ["--sizes", *map(str, profile.sizes), "--seeds", *map(str, profile.seeds)]
    sweep += ["--budget", profile.budget, "--window-samples", str(CORPUS_WINDOW_SAMPLES)]
    sweep += ["--jobs", str(SWEEP_JOBS)]
    sweep += ["--pretrain-epochs", "1", "--finetune-epochs", "1"] if profile.one_epoch else []
    finetune = [python, "train.py", "finetune", "--dataset", data, "--init", str(paths.model)]
    finetune += ["--output", str(paths.classifier), "--resume", *one_epoch]
    # Real clips as long as the corpus's, so both fill the same CNN window.
    real_build = [python, "build_dataset.py", "--source", "debian", "--size", profile.size, "--debian-part"]
    real_build += ["pretrain", "--clip-seconds", str(CORPUS_WINDOW_SAMPLES // TARGET_RATE), "--output", real]
    warm = [python, "space/app.py", "--model", str(paths.model), *library_flags(profile, paths)]
    warm += ["--warm-library"]
    named = [
        ("build the bundled corpus", [python, "build_dataset.py", "--source", "music21", "--size",
                                      profile.size, "--output", data]),
        *([("build the real-music source's pretraining part (Debian packages)", real_build)]
          if profile.real_music else []),
        (f"pretrain ({'every objective' if not profile.objectives else ', '.join(profile.objectives)}) "
         f"and the few-shot sweep (budget '{profile.budget}')", sweep),
        ("finetune the Space's classifier on the whole training split", finetune),
        ("evaluate retrieval and zero-shot genres",
         [python, "train.py", "evaluate", "--model", str(paths.model), "--dataset", data]),
        ("warm the Space's library cache (audio + caption embeddings, FAISS)", warm),
    ]  # fmt: skip
    return [(f"{i}/{len(named)} {name}", command) for i, (name, command) in enumerate(named, 1)]


def serve(profile: Profile, paths: ExperimentPaths, port: int, lock: ExclusiveLock) -> None:
    python = sys.executable
    command = [python, "space/app.py", "--model", str(paths.model), "--classifier", str(paths.classifier)]
    command += [*library_flags(profile, paths), "--port", str(port)]
    printable = " ".join(command).replace(python, "python")
    print(f"\n==> Space: {printable}\n    open http://127.0.0.1:{port}", flush=True)
    lock.release()  # the Space only reads
    subprocess.run(command, cwd=HERE)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    profile = PROFILES[args.profile]
    paths = experiment_paths(args.root, args.profile)
    check_disk(args.root, profile.min_free_gb)
    lock = hold_job_lock(paths.runs)  # held for the whole run, and by each stage while it runs
    start = time.perf_counter()
    for stage, command in stages(profile, paths):
        run(stage, command, lock)
    print(
        f"\nmain job: finished in {(time.perf_counter() - start) / 60:.1f} min. Report: {paths.sweep}/README.md "
        f"(table {paths.sweep}/table.md, plots *.png); model {paths.model}; classifier {paths.classifier}; "
        f"datasets {', '.join(space_libraries(profile, paths))}."
    )
    if args.serve:
        serve(profile, paths, args.port, lock)


if __name__ == "__main__":
    main()
