"""music_clip_common: the torch-free package every layer shares (files, lock, audio discovery, hashes, facts)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REPO

from music_clip_common.audio_files import AUDIO_EXTENSIONS, audio_files
from music_clip_common.files import ExclusiveLock, LockHeld, atomic_write_text


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)


def test_training_layer_reaches_no_builder_module() -> None:
    """markers and ood_eval use music_clip_common and the feature extractor, not the builder's helpers."""
    done = _python(
        "import sys, music_clip_train.markers, music_clip_train.ood_eval, music_clip_common.experiment\n"
        "print([m for m in sys.modules if m.startswith('music_clip_data')])\n"
        "print('torch' in sys.modules)"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "[]"


def test_common_package_imports_without_torch_and_build_dataset_without_fcntl() -> None:
    done = _python(
        "import sys\n"
        "import music_clip_common.files, music_clip_common.audio_files, music_clip_common.hashing\n"
        "import music_clip_common.experiment\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "sys.modules['fcntl'] = None  # as on Windows\n"
        "import build_dataset"
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_lock_refuses_a_second_holder_by_name_and_frees_on_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "job.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from music_clip_common.files import ExclusiveLock\n"
         f"lock = ExclusiveLock({str(path)!r}).acquire('busy'); lock.note(stage='s1'); print('held', flush=True)\n"
         "time.sleep(60)"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld) as refused:
            ExclusiveLock(path).acquire("the job folder is busy")
        assert f"pid {holder.pid} on host {socket.gethostname()}, started 20" in str(refused.value)
        assert refused.value.holder["stage"] == "s1"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with ExclusiveLock(path).acquire("busy"):  # the OS freed it with its holder
        pass


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic_write_text(target, json.dumps({"v": 1}))
    atomic_write_text(target, json.dumps({"v": 2}))
    assert json.loads(target.read_text()) == {"v": 2} and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_one_audio_walk_serves_the_folder_source_and_ood(tmp_path: Path) -> None:
    """The builder's folder source and the OOD evaluation see the same files: the one list and walk."""
    from feature_extraction_music_clip import MusicClipFeatureExtractor
    from music_clip_data.sources import SourceOptions, open_source
    from music_clip_train.ood_eval import folder_mels

    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.float32)
    (tmp_path / "jazz").mkdir()
    sf.write(tmp_path / "jazz" / "a.wav", tone, 16000)
    sf.write(tmp_path / "jazz" / "b.FLAC", tone[::-1].copy(), 16000)
    (tmp_path / "jazz" / "cover.jpg").write_bytes(b"\xff\xd8")
    (tmp_path / ".hidden.wav").write_bytes(b"")
    skipped: list[dict] = []
    walked = audio_files(tmp_path, skipped)
    assert [p.name for p in walked] == ["a.wav", "b.FLAC"] and len(skipped) == 1
    run = open_source("folder", SourceOptions(audio_dir=tmp_path))
    assert [t.audio_path for t in run.tracks] == walked
    fe = MusicClipFeatureExtractor()
    mels, names, _ = folder_mels(tmp_path, fe)
    assert names == ["jazz/a.wav", "jazz/b.FLAC"]
    assert np.array_equal(mels[0], fe.log_mel(fe.prepare_waveform(str(walked[0]))))  # the feature extractor's
    assert {".mp4", ".wma", ".mka", ".opus"} <= AUDIO_EXTENSIONS


def test_experiment_profiles_budgets_and_window_are_stated_once() -> None:
    from music_clip_common import experiment
    from music_clip_train import budgets, sweep

    assert sweep.BUDGETS is experiment.BUDGETS  # the sweep's budgets are the experiment's
    assert budgets.PRETRAIN_EXAMPLES == {k: v["pretrain_examples"] for k, v in experiment.BUDGETS.items()}
    assert all(p.budget in experiment.BUDGETS for p in experiment.PROFILES.values())
    assert experiment.CORPUS_WINDOW_SAMPLES == 240_000
