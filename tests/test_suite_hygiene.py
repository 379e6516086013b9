"""The test suite itself: it leaves its temp folder as it found it, and refuses to start on a disk too full for it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

# One passing test that writes a tmp_path file and fills the datasets cache, as most of the suite's tests do.
WRITER = """
from datasets import Dataset, load_dataset

def test_writes(tmp_path):
    Dataset.from_dict({"x": [1, 2]}).to_parquet(tmp_path / "d.parquet")
    assert len(load_dataset("parquet", data_files=str(tmp_path / "d.parquet"))["train"]) == 2
"""


def run_inner_pytest(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, Path]:
    """Run WRITER under the suite's own conftest and pytest settings, with the temp folder moved into tmp_path."""
    (tmp_path / "test_writer.py").write_text(WRITER)
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "PYTHONPATH": f"{REPO / 'tests'}{os.pathsep}{REPO}", **env}
    argv = [sys.executable, "-m", "pytest", "-q", "-c", str(REPO / "pyproject.toml"), "-p", "conftest"]
    argv += ["--rootdir", str(REPO), "-p", "no:cacheprovider", str(tmp_path / "test_writer.py")]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300), temp


def test_a_passing_run_leaves_no_file_in_the_temp_folder(tmp_path: Path) -> None:
    done, temp = run_inner_pytest(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [
        p for p in temp.rglob("*") if p.is_file()
    ] == []  # no datasets cache, no tmp_path of a passed test


def test_a_disk_too_full_for_the_suite_stops_it_before_the_first_test(tmp_path: Path) -> None:
    done, _ = run_inner_pytest(tmp_path, MUSICCLIP_TESTS_MIN_FREE_GB="1e9")
    assert done.returncode == 4, done.stdout + done.stderr  # pytest's usage error, no test run
    assert "the tests need 1e+09 GB free in" in done.stdout + done.stderr
    assert "passed" not in done.stdout
