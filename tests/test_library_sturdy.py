"""`music-clip index` under damage: cut or zeroed cache entries, a file whose decode hangs and one that kills
its worker (tests/index_faults.py), with one worker and with two; and the wheel installed outside the repo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from test_library import index, tiny_model_and_music

ROOT = Path(__file__).resolve().parents[1]
HARNESS = Path(__file__).with_name("index_faults.py")


def cache_entries(folder: Path) -> list[Path]:
    return sorted(p for p in (folder / ".cache" / "embeddings").rglob("*.npz") if ".tmp" not in p.name)


def test_cut_zeroed_and_empty_cache_entries_are_embedded_again(
    tmp_path: Path, immich_tracks: list[Path], minilm_path: str
) -> None:
    model_dir, music = tiny_model_and_music(tmp_path, minilm_path, immich_tracks[::7])
    out = tmp_path / "idx"
    first = index(music, str(model_dir), out)
    entries = cache_entries(out)
    assert first["embedded"] == 4 and len(entries) == 4
    cut, zeroed, empty = entries[:3]
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # a power cut mid-write
    zeroed.write_bytes(bytes(zeroed.stat().st_size))  # blocks allocated, never written
    empty.write_bytes(b"")
    again = index(music, str(model_dir), out)
    assert (again["embedded"], again["cached"], again["skipped"]) == (3, 1, 0), again
    assert (out / "skipped.jsonl").read_text() == ""
    assert len(cache_entries(out)) == 4


def run_harness(music: Path, model: Path, out: Path, workers: str, cwd: Path) -> tuple[int, str, float]:
    argv = ["index", str(music), "--model", str(model), "--output", str(out), "--workers", workers]
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(HARNESS), *argv, "--decode-time-limit", "4"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=400,
    )
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started


@pytest.mark.slow  # two runs of a process with its fork server, a 4-s time limit each: ~75 s on 2 cores
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_hanging_and_a_worker_killing_file_fail_alone(
    tmp_path: Path, immich_tracks: list[Path], minilm_path: str, workers: str
) -> None:
    model_dir, music = tiny_model_and_music(tmp_path, minilm_path, immich_tracks[:2])
    shutil.copy(immich_tracks[3], music / "a_HANGME.opus")
    shutil.copy(immich_tracks[4], music / "b_KILLME.opus")
    out = tmp_path / "idx"
    rc, log, _ = run_harness(music, model_dir, out, workers, tmp_path)
    assert rc == 0, log[-3000:]
    info = json.loads((out / "index.json").read_text())
    assert (info["files"], info["skipped"]) == (2, 2), info
    reasons = {Path(s["path"]).name: s["reason"] for s in map(json.loads, (out / "skipped.jsonl").open())}
    assert reasons["a_HANGME.opus"] == "decode time limit: still running after 4 s", reasons
    assert reasons["b_KILLME.opus"].startswith("decode worker died: killed by SIGKILL"), reasons
    # The second run does not stop on them, nor wait for them again: they are remembered.
    rc, log, seconds = run_harness(music, model_dir, out, workers, tmp_path)
    assert rc == 0, log[-3000:]
    again = json.loads((out / "index.json").read_text())
    assert (again["files"], again["cached"], again["skipped"]) == (2, 2, 2), again
    reasons = [s["reason"] for s in map(json.loads, (out / "skipped.jsonl").open())]
    assert all(r.endswith("(on an earlier run; --retry-skipped tries it again)") for r in reasons), reasons


@pytest.mark.slow
def test_the_wheel_indexes_and_searches_from_any_folder(
    tmp_path: Path, immich_tracks: list[Path], minilm_path: str
) -> None:
    """`pip install .` (a wheel, not editable) into a fresh target; run its `music-clip` console script from a
    folder outside the repository with only the target and the dependencies on the path (`-S`: no site, so
    no editable install of the repository either)."""
    wheels, target, source = tmp_path / "wheels", tmp_path / "target", tmp_path / "source"
    # A copy of the tree (tracked and new files): setuptools builds in the source folder (build/, *.egg-info).
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.splitlines()  # fmt: skip
    for name in listed:
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(source), "-w", str(wheels)],
                   check=True, cwd=tmp_path)  # fmt: skip
    wheel = next(wheels.glob("music_clip-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    model_dir, music = tiny_model_and_music(tmp_path, minilm_path, immich_tracks[::9])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]])}
    script = [sys.executable, "-S", str(target / "bin" / "music-clip")]

    def music_clip(*argv: str) -> str:
        proc = subprocess.run([*script, *argv], env=env, cwd=elsewhere, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    music_clip("index", str(music), "--model", str(model_dir), "--output", "idx", "--workers", "1")
    assert json.loads((elsewhere / "idx" / "index.json").read_text())["files"] == 4
    found = [
        json.loads(line)
        for line in music_clip("search", "idx", "calm piano", "-k", "2", "--json").splitlines()
    ]
    assert len(found) == 2 and all(Path(m["path"]).parent == music for m in found)
    where = subprocess.run([*script[:2], "-c", "import music_clip_library, audio_music_clip as a; "
                            "print(music_clip_library.__file__, a.__file__)"],
                           env=env, cwd=elsewhere, capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert str(ROOT) not in where and where.count(str(target)) == 2, where
