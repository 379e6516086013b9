"""The main job end to end at a tiny size (CI smoke): every stage's command, the report, and the Space answering.

The end-to-end run takes about 3.5 minutes on 2 cores, so its tests are `slow` (CI runs them); the stage plan,
the lock and the profiles' flags are checked in the default run."""

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from gradio_client import Client, handle_file
from test_space import free_port, wait_for

from main_job import stages
from music_clip_common.experiment import BUDGETS, PROFILES, START_OBJECTIVE, experiment_paths
from music_clip_train.collate import OBJECTIVE_LABELS


def smoke_command(root: Path) -> tuple[list[str], dict[str, str]]:
    """The main job's smoke profile in `root` (no Space), and its environment."""
    command = [
        sys.executable,
        str(REPO / "main_job.py"),
        "--profile",
        "smoke",
        "--root",
        str(root),
        "--no-serve",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(root / "hf")}
    return command, env


def main_job(root: Path, *extra: str, timeout: float = 900) -> subprocess.CompletedProcess:
    command, env = smoke_command(root)
    return subprocess.run(
        [*command, *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, small_music21) -> dict:
    root = tmp_path_factory.mktemp("main_job")
    # Stage 1 resumes from the session's small render (its chunks, rendered by the same code: test_music21_source
    # tests the rendering); decoding, log-mels and every later stage still run from nothing.
    rendered = small_music21[0].dir
    shutil.copytree(rendered, root / "data" / "music21-small" / ".cache" / "music21" / rendered.name)
    start = time.perf_counter()
    first = main_job(root)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return {"root": root, "first": first, "seconds": time.perf_counter() - start}


@pytest.mark.slow
def test_every_stage_leaves_its_artifact(smoke):
    root = smoke["root"]
    runs = root / "runs" / "smoke"
    for stage in ("1/5", "2/5", "3/5", "4/5", "5/5"):
        assert f"==> {stage}" in smoke["first"].stdout
    from datasets import load_dataset

    assert load_dataset(str(root / "data" / "music21-small"), "captions", split="train").num_rows > 0
    genres = load_dataset(str(root / "data" / "music21-small"), "genres")
    assert len(genres["train"].features["genre"].names) == 7
    assert (runs / "sweep" / "pretrained" / START_OBJECTIVE / "model.safetensors").exists()
    assert (runs / "classifier" / "model.safetensors").exists()
    table = (runs / "sweep" / "table.md").read_text()
    assert "Audio Encoder" in table and OBJECTIVE_LABELS[START_OBJECTIVE] in table
    evaluation = json.loads((runs / "sweep" / "pretrained" / START_OBJECTIVE / "evaluation.json").read_text())
    assert evaluation  # retrieval and zero-shot numbers were written


@pytest.mark.slow
def test_a_second_run_reuses_everything(smoke):
    model = smoke["root"] / "runs" / "smoke" / "sweep" / "pretrained" / START_OBJECTIVE / "model.safetensors"
    before = model.stat().st_mtime_ns
    start = time.perf_counter()
    again = main_job(smoke["root"])
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert model.stat().st_mtime_ns == before  # not retrained
    assert time.perf_counter() - start < smoke["seconds"]


@pytest.mark.slow
def test_two_jobs_in_one_folder_are_refused(smoke):
    lock_path = smoke["root"] / "runs" / "smoke" / ".main_job.lock"
    with open(lock_path, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused = main_job(smoke["root"], timeout=60)
    assert refused.returncode != 0 and "another main job is running" in refused.stderr


@pytest.mark.slow
def test_the_space_serves_what_the_job_made(smoke, immich_tracks):
    root = smoke["root"]
    runs = root / "runs" / "smoke"
    port = free_port()
    log = root / "space.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(root / "hf"),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    command = [
        sys.executable,
        str(REPO / "space" / "app.py"),
        "--model",
        str(runs / "sweep" / "pretrained" / START_OBJECTIVE),
        "--classifier",
        str(runs / "classifier"),
        "--library",
        str(root / "data" / "music21-small"),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(command, cwd=root, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/", proc, log)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(root / "downloads"))
        label, _, _ = client.predict(handle_file(str(immich_tracks[0])), api_name="/genre")
        assert len(label["confidences"]) == 7
    finally:
        proc.kill()


def _live_group_members(pgid: int) -> list[int]:
    """Pids (not zombies) whose process group is `pgid`, leader excluded."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "(comm)": state, ppid, pgrp, ...
            pid = int(stat.parent.name)
            if int(fields[2]) == pgid and fields[0] != "Z" and pid != pgid:
                found.append(pid)
    return found


def _smoke_job(root: Path, **popen) -> subprocess.Popen:
    command, env = smoke_command(root)
    # Its own process group: stages left behind by a kill -9 can be found and ended.
    return subprocess.Popen(command, env=env, text=True, start_new_session=True, **popen)


def test_a_stage_orphaned_by_kill_9_keeps_the_folder_locked(tmp_path):
    """`kill -9` of the main job leaves its running stage behind: a second job must wait for that stage."""
    first = _smoke_job(tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    second = None
    try:
        deadline = time.monotonic() + 60
        while not _live_group_members(first.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _live_group_members(first.pid), "stage 1 never started"
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        second = _smoke_job(tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _, err = second.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            err = ""
        assert _live_group_members(first.pid), "the orphaned stage ended before the check: it proved nothing"
        assert second.returncode is not None and second.returncode != 0, (
            "a second main job started beside the orphaned stage of the first"
        )
        assert "another main job is running" in err and "stage '1/5" in err, err
    finally:
        for proc in (first, second):
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)


def test_the_space_defaults_to_what_the_quick_main_job_makes() -> None:
    sys.path.insert(0, str(REPO / "space"))  # the Space folder is self-contained: it cannot import main_job
    import config

    quick = experiment_paths(Path("."), "quick")
    assert config.DEFAULT_MODEL == quick.model.as_posix() == f"runs/quick/sweep/pretrained/{START_OBJECTIVE}"
    assert (
        config.DEFAULT_CLASSIFIER == quick.classifier.as_posix()
        and config.DEFAULT_LIBRARY == quick.data.as_posix()
    )
    assert (
        f"--objective {START_OBJECTIVE} " in config.MAKE_MODEL and config.DEFAULT_MODEL in config.MAKE_MODEL
    )
    assert config.DEFAULT_MODEL in config.MAKE_CLASSIFIER


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_pretraining_flags_are_made_in_one_place_the_sweep_under_the_profiles_budget(name: str) -> None:
    """A profile is a main-job run; its training runs use one budget, which the sweep turns into flags."""
    profile = PROFILES[name]
    commands = [command for _, command in stages(profile, experiment_paths(Path("root"), name))]
    # No second set of pretraining flags (`build_dataset.py --debian-part pretrain` only names the data's part).
    assert not any(command[1:3] == ["train.py", "pretrain"] for command in commands)
    sweep = next(command for command in commands if "sweep" in command)
    assert sweep[sweep.index("--budget") + 1] == profile.budget and profile.budget in BUDGETS
    assert all(o in sweep for o in [START_OBJECTIVE, *profile.objectives])


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_real_music_is_built_after_the_corpus_and_served_except_in_the_smoke_run(name: str) -> None:
    """quick and full build the real-music source's pretraining part right after the corpus, and the Space's
    warm-up (like the Space) gets both libraries; the smoke run (CI) downloads nothing."""
    profile, paths = PROFILES[name], experiment_paths(Path("root"), name)
    named = stages(profile, paths)
    warm = named[-1][1]
    libraries = [warm[i + 1] for i, flag in enumerate(warm) if flag == "--library"]
    if name == "smoke":
        assert not any("debian" in " ".join(command) for _, command in named)
        assert libraries == [str(paths.data)] and named[-1][0].startswith("5/5 warm")
        return
    real = str(paths.data.parent / f"debian-{profile.size}")
    assert named[1][0].startswith(f"2/{len(named)} build the real-music")
    assert named[1][1][1:] == ["build_dataset.py", "--source", "debian", "--size", profile.size, "--debian-part",
                               "pretrain", "--clip-seconds", "15", "--output", real]  # fmt: skip
    assert "--warm-library" in warm and libraries == [str(paths.data), real]
    sweep = next(command for _, command in named if "sweep" in command)
    assert sweep[sweep.index("--dataset") + 1] == str(paths.data)  # few-shot cells: the renders' genres
    assert sweep[sweep.index("--pretrain-dataset") + 1] == real  # pretraining: renders + real tracks
