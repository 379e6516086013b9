"""`music-clip index --shard i/K` then `--finish`: two parts merged give the index one run gives (same rows,
same search results); a missing part or a part made with another model is refused with the command to run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from datasets import Dataset
from test_library import index, search_json, tiny_model_and_music

from music_clip_library.cli import main


def run(*argv: str) -> int:
    return main(["index", *argv, "--workers", "1"])


def test_two_shards_merged_search_like_one_run(
    tmp_path: Path, immich_tracks: list[Path], minilm_path: str, capsys: pytest.CaptureFixture
) -> None:
    model_dir, music = tiny_model_and_music(tmp_path, minilm_path, immich_tracks[::4])
    (music / "notes.txt").write_text("not audio")
    one = tmp_path / "one"
    index(music, str(model_dir), one)
    sharded = tmp_path / "sharded"
    common = [str(music), "--model", str(model_dir), "--output", str(sharded)]
    assert run(*common, "--shard", "0/2") == 0
    assert run(*common, "--finish") == 2  # part 1/2 is missing
    assert "part(s) 1/2 of" in capsys.readouterr().err
    assert run(*common, "--shard", "1/2") == 0
    parts = [json.loads((sharded / ".parts" / f"{i}-of-2" / "part.json").read_text()) for i in range(2)]
    assert all(p["files"] > 0 for p in parts) and sum(p["files"] for p in parts) == 7  # disjoint, covering
    capsys.readouterr()
    assert run(*common, "--finish") == 0
    report = capsys.readouterr().out
    with capsys.disabled():
        print(report)  # the merge's cost
    first, merged = (Dataset.from_parquet(str(f / "library.parquet")) for f in (one, sharded))
    assert first.to_dict() == merged.to_dict()
    assert (one / "skipped.jsonl").read_text() == (sharded / "skipped.jsonl").read_text()
    for query in ("calm piano", "energetic drums"):
        assert search_json(capsys, str(one), query, "-k", "5") == search_json(
            capsys, str(sharded), query, "-k", "5"
        )

    # A part re-made with another model is refused.
    other = tmp_path / "other-model"
    shutil.copytree(model_dir, other)
    shutil.copy(tmp_path / "model" / "config.json", other / "config.json")
    assert run(str(music), "--model", str(other), "--output", str(sharded), "--shard", "1/2") == 0
    assert run(*common, "--finish") == 2
    assert "was made with model" in capsys.readouterr().err
