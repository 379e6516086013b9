"""`build_dataset.py --shard I/K` then `--finish K`: the same dataset as one unsharded build, byte for byte."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, copy_mood_folders
from datasets import load_dataset

import build_dataset

MOODS = ("calm", "happy", "tender")
COMMON = ["--num-proc", "1", "--max-seconds", "6", "--test-size", "0.5", "--seed", "3"]


@pytest.fixture(scope="module")
def music_dir(tmp_path_factory: pytest.TempPathFactory, immich_tracks: list[Path]) -> Path:
    root = tmp_path_factory.mktemp("music")
    copy_mood_folders(root, immich_tracks, MOODS, 4)
    return root


def _configs(out: Path) -> dict[str, list[dict]]:
    """Every row of both configs (audio bytes, mels, captions, labels) by split, in order."""
    rows = {}
    for name, splits in (("captions", ["train"]), ("genres", ["train", "test"])):
        for split in splits:
            ds = load_dataset(str(out), name, split=split).cast_column("audio", _raw_audio())
            rows[f"{name}/{split}"] = ds.to_list()
    return rows


def _raw_audio():
    from datasets import Audio

    return Audio(decode=False)


def _without(status: dict, key: str) -> dict:
    return {k: v for k, v in status.items() if k != key}


def _sharded(source_args: list[str], out: Path, count: int) -> None:
    for index in range(count):
        assert build_dataset.main([*source_args, "--output", str(out), "--shard", f"{index}/{count}"]) == 0
    assert build_dataset.main([*source_args, "--output", str(out), "--finish", str(count)]) == 0


@pytest.mark.parametrize("count", [1, 2, 4])
def test_k_shards_finished_equal_the_unsharded_build(music_dir: Path, tmp_path: Path, count: int) -> None:
    source = ["--audio-dir", str(music_dir), *COMMON]
    assert build_dataset.main([*source, "--output", str(tmp_path / "one")]) == 0
    _sharded(source, tmp_path / "parts", count)
    one, parts = _configs(tmp_path / "one"), _configs(tmp_path / "parts")
    assert one == parts and sum(map(len, one.values())) == 12


def test_finish_refuses_a_missing_or_mismatched_part(
    music_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    source, out = ["--audio-dir", str(music_dir), *COMMON], str(tmp_path / "ds")
    assert build_dataset.main([*source, "--output", out, "--shard", "0/2"]) == 0
    assert build_dataset.main([*source, "--output", out, "--finish", "2"]) == 2
    assert "part(s) 1/2 missing" in capsys.readouterr().err
    other = [*source[:-1], "4"]  # another seed
    assert build_dataset.main([*other, "--output", out, "--shard", "1/2"]) == 0
    assert build_dataset.main([*source, "--output", out, "--finish", "2"]) == 2
    assert "part 1/2 was built with other settings (seed)" in capsys.readouterr().err
    assert build_dataset.main([*source, "--output", out, "--shard", "1/2"]) == 0
    record_path = tmp_path / "ds" / ".shards" / "shard-1-of-2.json"
    record = json.loads(record_path.read_text())
    del record["format"]  # as an older builder wrote it, before each status had its clips' spans
    record_path.write_text(
        json.dumps({**record, "statuses": {k: _without(v, "spans") for k, v in record["statuses"].items()}})
    )
    assert build_dataset.main([*source, "--output", out, "--finish", "2"]) == 2
    assert (
        "part 1/2 was written by an older builder (record format 1, this one reads 2)"
        in capsys.readouterr().err
    )
    assert not (tmp_path / "ds" / "README.md").exists()  # nothing written from a refused finish


@pytest.mark.slow  # ~40 s / ~20 s: CI runs it with the slow tests
def test_a_killed_shard_resumes_and_two_shards_run_side_by_side(music_dir: Path, tmp_path: Path) -> None:
    source, out = ["--audio-dir", str(music_dir), *COMMON], tmp_path / "ds"
    command = [sys.executable, "build_dataset.py", *source, "--output", str(out)]
    killed = subprocess.Popen([*command, "--shard", "0/2"], cwd=REPO)
    deadline = time.monotonic() + 120
    while not list((out / ".cache" / "mels").glob("*.npz")) and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.kill()
    killed.wait()
    assert not (out / ".shards" / "shard-0-of-2.json").exists()  # a killed part is not complete
    both = [subprocess.Popen([*command, "--shard", f"{i}/2"], cwd=REPO) for i in range(2)]  # side by side
    assert [p.wait(timeout=600) for p in both] == [0, 0]
    assert build_dataset.main([*source, "--output", str(out), "--finish", "2"]) == 0
    assert build_dataset.main([*source, "--output", str(tmp_path / "one")]) == 0
    assert _configs(out) == _configs(tmp_path / "one")
    summary = json.loads((out / "build_summary.json").read_text())
    assert summary["kept"] == 12 and summary["mel_cache"]["hits"] >= 1  # the killed part's mels were kept


@pytest.mark.slow
def test_music21_small_in_1_2_and_4_shards_equals_the_unsharded_build(tmp_path: Path, small_music21) -> None:
    """The bundled corpus' small build: genres and captions configs (rows, audio, mels, captions, splits) equal.

    All builds share one cache, started from the session's render (as the main job's test does): the first
    build decodes, the parts read its mels; the folder tests above decode inside the parts."""
    import shutil

    cache = tmp_path / "cache"
    rendered = small_music21[0].dir
    shutil.copytree(rendered, cache / "music21" / rendered.name)
    source = ["--source", "music21", "--size", "small", "--cache-dir", str(cache), "--num-proc", "2"]
    assert build_dataset.main([*source, "--output", str(tmp_path / "one")]) == 0
    one = _configs(tmp_path / "one")
    assert len(one["genres/test"]) > 0 and len(one["captions/train"]) > len(one["genres/train"])
    for count in (1, 2, 4):
        _sharded(source, tmp_path / f"k{count}", count)
        assert _configs(tmp_path / f"k{count}") == one, f"{count} shards"
