"""Clips from whole tracks (`--clip-seconds`): long real tracks → clip rows, every split by track (group)."""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from datasets import load_dataset

import build_dataset

MOODS = ("calm", "happy", "tender")
TRACKS_PER_MOOD = 4
CLIP_SECONDS = 30


def concat(parts: list[Path], out: Path) -> None:
    """A long track: immich tracks back to back, re-encoded by FFmpeg (mono 22.05 kHz keeps it fast)."""
    inputs = [arg for part in parts for arg in ("-i", str(part))]
    graph = "".join(f"[{i}:a]" for i in range(len(parts))) + f"concat=n={len(parts)}:v=0:a=1"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            *inputs,
            "-filter_complex",
            graph,
            "-ac",
            "1",
            "-ar",
            "22050",
            str(out),
        ],
        check=True,
    )


@pytest.fixture(scope="module")
def long_tracks(tmp_path_factory: pytest.TempPathFactory, immich_tracks: list[Path]) -> Path:
    """Folder-per-genre of 12 long tracks (~64 s: two ~32 s immich tracks each), FLAC and MP3."""
    root = tmp_path_factory.mktemp("long_music")
    for mood in MOODS:
        (root / mood).mkdir()
        members = [t for t in immich_tracks if t.parent.name == mood][:TRACKS_PER_MOOD]
        for i, first in enumerate(members):
            concat(
                [first, members[(i + 1) % len(members)]], root / mood / f"long_{i}.{('flac', 'mp3')[i % 2]}"
            )
    return root


@pytest.fixture(scope="module")
def clip_build(long_tracks: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("clips") / "ds"
    argv = ["--audio-dir", str(long_tracks), "--output", str(out), "--num-proc", "1",
            "--clip-seconds", str(CLIP_SECONDS), "--test-size", "0.5", "--seed", "3"]  # fmt: skip
    assert build_dataset.main(argv) == 0
    return out, json.loads((out / "build_summary.json").read_text())


def _rows(out: Path) -> dict[str, list[dict]]:
    splits = {name: load_dataset(str(out), "genres", split=name) for name in ("train", "test")}
    if (out / "captions").is_dir() and any((out / "captions").glob("*.parquet")):
        splits["captions"] = load_dataset(str(out), "captions", split="train")
    return {
        name: [
            {**row, "meta": json.loads(row["metadata"])}
            for row in split.remove_columns(["audio", "mel"]).to_list()
        ]
        for name, split in splits.items()
    }


def test_long_tracks_become_clip_rows_that_keep_their_track(clip_build: tuple[Path, dict]) -> None:
    out, summary = clip_build
    rows = _rows(out)
    every = [r for split in rows.values() for r in split]
    assert summary["clips"]["tracks"] == len(MOODS) * TRACKS_PER_MOOD
    assert summary["kept"] == len(every) == 2 * summary["clips"]["tracks"]  # ~64 s → two 30-s clips each
    frames = CLIP_SECONDS * 16000 // 1024 + 1
    for row in every:
        clip = row["meta"]["clip"]
        assert row["track_id"] == f"{clip['track_id']}#clip{clip['index']:03d}"
        assert row["group_id"] == clip["track_id"]  # the folder source's group is the track
        assert row["duration_s"] == pytest.approx(CLIP_SECONDS) and row["mel_length"] == frames
    starts = defaultdict(list)
    for row in every:
        starts[row["meta"]["clip"]["track_id"]].append(row["meta"]["clip"]["start_s"])
    assert all(sorted(s) == [0.0, 30.0] for s in starts.values())


def test_no_track_has_clips_on_both_sides_of_any_split(clip_build: tuple[Path, dict]) -> None:
    out, summary = clip_build
    rows = _rows(out)
    tracks = {name: {r["meta"]["clip"]["track_id"] for r in split} for name, split in rows.items()}
    groups = {name: {r["group_id"] for r in split} for name, split in rows.items()}
    assert all(tracks.values())  # every split has clips
    for a, b in (("train", "test"), ("train", "captions"), ("test", "captions")):
        assert not tracks[a] & tracks[b], (a, b)
        assert not groups[a] & groups[b], (a, b)
    per_split = summary["clips_per_class_and_split"]
    assert sum(per_split["test"].values()) == len(rows["test"])  # the summary counts clips


def test_a_clip_row_stores_its_own_audio_and_that_audio_gives_its_mel(clip_build: tuple[Path, dict]) -> None:
    from feature_extraction_music_clip import MusicClipFeatureExtractor

    out, _ = clip_build
    fe = MusicClipFeatureExtractor.from_pretrained(out / "feature_extractor")
    row = load_dataset(str(out), "genres")["test"][1]
    samples = row["audio"].get_all_samples()
    assert samples.data.shape[-1] == CLIP_SECONDS * 16000
    mel = fe.log_mel(fe.prepare_waveform(samples.data.numpy(), 16000))
    np.testing.assert_allclose(mel, np.asarray(row["mel"], dtype=np.float32), atol=1e-3)


def test_manifest_groups_win_over_tracks_and_clip_options_are_checked(
    long_tracks: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Two tracks of one album (a manifest group) land on the same side; spread clips with a cap."""
    files = sorted(long_tracks.rglob("long_*"))
    lines = ["path,genre,group_id,role"] + [
        f"{f},{f.parent.name},album{i // 2},genres" for i, f in enumerate(files)
    ]
    manifest = tmp_path / "tracks.csv"
    manifest.write_text("\n".join(lines))
    out = tmp_path / "ds"
    argv = ["--metadata", str(manifest), "--output", str(out), "--num-proc", "1", "--clip-seconds", "10",
            "--hop-seconds", "5", "--max-clips-per-track", "3", "--test-size", "0.5"]  # fmt: skip
    assert build_dataset.main(argv) == 0
    rows = _rows(out)
    albums = {name: {r["group_id"] for r in split} for name, split in rows.items()}
    assert len(albums["train"]) == len(albums["test"]) == 3  # one of each class' two albums in test
    assert not albums["train"] & albums["test"]
    per_track = defaultdict(list)
    for row in (r for split in rows.values() for r in split):
        per_track[row["meta"]["clip"]["track_id"]].append(row["meta"]["clip"]["start_s"])
    # ~64 s, 10-s clips every 5 s → 11 candidates; three spread evenly: first, middle, last.
    assert {len(s) for s in per_track.values()} == {3}
    assert all(sorted(s)[0] == 0.0 and sorted(s)[-1] >= 50.0 for s in per_track.values())

    with pytest.raises(SystemExit):
        build_dataset.parse_args(["--audio-dir", str(long_tracks), "--output", "x", "--hop-seconds", "5"])
    assert "need --clip-seconds" in capsys.readouterr().err


def test_sweep_subsets_draw_whole_tracks_and_count_clips() -> None:
    from music_clip_train.subsets import nested_order

    labels = np.array([c for c in "ab" for _ in range(40)])
    groups = [f"{c}-track{i // 4}" for c in "ab" for i in range(40)]  # 10 tracks of 4 clips per class
    order = nested_order(labels, 0, groups)
    assert sorted(order) == list(range(80))
    for n in (8, 12, 20, 40):  # N clips from ceil(N / 4) tracks, the earlier prefix inside the later
        prefix = order[:n]
        assert len({groups[i] for i in prefix}) == -(-n // 4)
        assert set(order[: n // 2]) <= set(prefix)
    assert abs(sum(labels[order[:40]] == "a") - 20) <= 4  # stratified within one track
    single = [f"g{i}" for i in range(80)]  # one clip per group: the ungrouped ordering, unchanged
    np.testing.assert_array_equal(nested_order(labels, 5, single), nested_order(labels, 5))


def test_balanced_tracks_give_k_tracks_of_every_class_with_all_their_clips() -> None:
    from music_clip_train.subsets import balanced_tracks

    # Three classes with 5, 3 and 8 tracks of 2-4 clips each, the clips of a track not next to each other.
    tracks = [(c, t, 2 + (t % 3)) for c, count in zip("abc", (5, 3, 8)) for t in range(count)]
    rows = [(c, f"{c}{t}") for c, t, clips in tracks for _ in range(clips)]
    shuffled = [rows[i] for i in np.random.default_rng(1).permutation(len(rows))]
    labels = np.array([c for c, _ in shuffled])
    groups = [g for _, g in shuffled]
    orders = [balanced_tracks(labels, seed, groups) for seed in range(5)]
    for order in orders:
        assert sorted(i for track in order for i in track) == list(range(len(rows)))
        assert all(len({groups[i] for i in track}) == 1 for track in order)  # a track's clips, all of them
        assert [len(track) for track in order] == [sum(g == groups[t[0]] for g in groups) for t in order]
        per_class = [labels[track[0]] for track in order]
        for k in (1, 2, 3):  # the first 3k tracks: k of each class
            assert sorted(per_class[: 3 * k]) == sorted("abc" * k)
        assert sorted(per_class[9:11]) == ["a", "c"]  # b has no fourth track: the round goes on without it
    assert len({tuple(map(tuple, order)) for order in orders}) == 5  # the seed draws the tracks
