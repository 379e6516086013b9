"""`music-clip index` / `music-clip search` on a folder of real music (the immich tracks), with a model trained
in the fixture (test_space's, fitted to the whole tracks' captions), a real `kill -9` and real FFmpeg re-encodes.

The trained-model tests take minutes on 2 cores: `pytest -m slow tests/test_library.py`. The default run keeps
one quick check with a random tiny model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from music_clip_library.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """test_space's fixture model (tiny towers fitted for seconds to 20 immich tracks' captions), fitted here to
    the whole tracks, as the indexer embeds them (test_space fits the first 12 s)."""
    import datasets.config
    import test_space
    from test_space import build_library, build_models

    from feature_extraction_music_clip import MusicClipFeatureExtractor

    root = tmp_path_factory.mktemp("trained")
    # Whole tracks (longer than any immich track), and a datasets cache of our own: `datasets` would otherwise
    # reuse the Arrow cache of test_space's library folder of the same name (its 12-s mels).
    saved = test_space.CLIP_SECONDS, datasets.config.HF_DATASETS_CACHE
    test_space.CLIP_SECONDS, datasets.config.HF_DATASETS_CACHE = 40, root / "datasets-cache"
    try:
        shown, captions = build_library(root / "library", MusicClipFeatureExtractor())
        pretrained, classifier = build_models(root, root / "library", captions)
        fit_on_excerpts(pretrained, root / "library", captions)
    finally:
        test_space.CLIP_SECONDS, datasets.config.HF_DATASETS_CACHE = saved
    return {"model": str(pretrained), "classifier": str(classifier), "captions": captions}


def fit_on_excerpts(model_dir: Path, library: Path, captions: dict[str, str], steps: int = 80) -> None:
    """More steps of the same captions loss on random 12-32 s excerpts of each track, so the model knows a
    track from any part of it (what `--like` asks of a model; the tiny fixture has seconds, not a corpus)."""
    import torch
    from datasets import load_dataset
    from transformers import PreTrainedTokenizerFast

    from feature_extraction_music_clip import MusicClipFeatureExtractor
    from modeling_music_clip import MusicClipModel
    from processing_music_clip import MusicClipProcessor

    model = MusicClipModel.from_pretrained(model_dir)
    fe = MusicClipFeatureExtractor.from_pretrained(model_dir)
    text = MusicClipProcessor(fe, PreTrainedTokenizerFast.from_pretrained(model_dir))(
        text=[captions[t] for c in ("captions", "genres") for s in load_dataset(str(library), c).values()
              for t in s["track_id"]]
    )  # fmt: skip
    mels = [np.asarray(m, np.float32) for c in ("captions", "genres")
            for s in load_dataset(str(library), c).values() for m in s.with_format("numpy")["mel"]]  # fmt: skip
    rng = np.random.default_rng(0)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    fps = fe.sampling_rate / fe.hop_length
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model.train()
    try:
        for _ in range(steps):
            crops = []
            for mel in mels:
                length = int(rng.uniform(12, 32) * fps)
                start = int(rng.integers(0, max(1, len(mel) - length)))
                crops.append(mel[start : start + length])
            loss = model(**text, **fe.window(crops), return_loss=True).loss
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    finally:
        torch.set_num_threads(threads)
    model.eval().save_pretrained(model_dir)


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory, immich_tracks: list[Path]) -> Path:
    """A user's music folder: the 28 tracks in nested mood folders, one tagged MP3, and files to skip."""
    root = tmp_path_factory.mktemp("music")
    for track in immich_tracks:
        (root / track.parent.name).mkdir(exist_ok=True)
        shutil.copy(track, root / track.parent.name / track.name)
    tagged = root / "calm" / "deep" / "tagged.mp3"
    tagged.parent.mkdir()
    ffmpeg(
        immich_tracks[-1], tagged, "-t", "20", "-metadata", "title=Night Drive", "-metadata", "artist=Someone"
    )
    (root / "calm" / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    (root / "tender" / "broken.flac").write_bytes(b"fLaC" + bytes(300))
    return root


def ffmpeg(source: Path, out: Path, *options: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), *options, str(out)], check=True)


def index(music: Path, model: str, out: Path, *extra: str) -> dict:
    assert main(["index", str(music), "--model", model, "--output", str(out), "--workers", "1", *extra]) == 0
    return json.loads((out / "index.json").read_text())


def search_json(capsys: pytest.CaptureFixture, *argv: str) -> list[dict]:
    capsys.readouterr()
    assert main(["search", *argv, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.fixture(scope="module")
def full_index(trained: dict, music: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("idx") / "full"
    index(music, trained["model"], out)
    return out


def cache_entries(folder: Path) -> list[Path]:
    return [p for p in (folder / ".cache").rglob("*.npz") if ".tmp" not in p.name]


def settled_count(folder: Path, quiet_s: float = 3.0, limit_s: float = 60.0) -> int:
    """The number of cache entries once none has appeared for `quiet_s`."""
    count, since, deadline = len(cache_entries(folder)), time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
        time.sleep(0.2)
        if len(cache_entries(folder)) != count:
            count, since = len(cache_entries(folder)), time.monotonic()
    return count


@pytest.mark.slow
def test_index_folder_has_rows_tags_skips_and_an_index_type(full_index: Path) -> None:
    info = json.loads((full_index / "index.json").read_text())
    rows = Dataset.from_parquet(str(full_index / "library.parquet"))
    assert info["files"] == len(rows) == 29 and info["embedded"] == 29 and info["cached"] == 0
    skipped = [json.loads(line) for line in (full_index / "skipped.jsonl").read_text().splitlines()]
    reasons = {Path(s["path"]).name: s["reason"] for s in skipped}
    assert reasons["cover.jpg"].startswith("not an audio file extension")
    assert reasons["broken.flac"].startswith("Could not read audio from this file")  # the audio path's reason
    tagged = rows.filter(lambda r: r["relative_path"] == "calm/deep/tagged.mp3")[0]
    assert (tagged["title"], tagged["artist"], tagged["folder"]) == ("Night Drive", "Someone", "calm/deep")
    assert tagged["duration_s"] == pytest.approx(20.0, abs=0.1)
    emb = np.asarray(rows["audio_embedding"], dtype=np.float32)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert info["index"] == {"factory": "Flat", "search_params": ""}  # small library: exact
    assert "Index type: `Flat`" in (full_index / "README.md").read_text()


@pytest.mark.slow
def test_kill_9_midway_then_rerun_gives_the_same_index_and_embeds_each_file_once(
    trained: dict, music: Path, full_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = ["index", str(music), "--model", trained["model"], "--output", str(out), "--workers", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "music_clip_library.cli", *argv], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and len(cache_entries(out)) < 3:
        time.sleep(0.01)
    proc.kill()  # SIGKILL
    proc.wait()
    done_before = settled_count(out)  # a worker orphaned mid-file finishes that file's entry, then exits
    assert proc.returncode == -9 and 0 < done_before < 29, done_before
    assert not (out / "index.json").exists()  # an unfinished folder never looks finished

    again = index(music, trained["model"], out)
    assert again["cached"] == done_before and again["embedded"] == 29 - done_before  # once per file in total
    first, second = (Dataset.from_parquet(str(f / "library.parquet")) for f in (full_index, out))
    assert first["path"] == second["path"] and first["file_sha256"] == second["file_sha256"]
    np.testing.assert_array_equal(np.asarray(first["audio_embedding"]), np.asarray(second["audio_embedding"]))
    for query in ("a calm acoustic piece", "energetic electronic music"):
        assert search_json(capsys, str(full_index), query, "-k", "5") == search_json(
            capsys, str(out), query, "-k", "5"
        )


@pytest.mark.slow
def test_a_changed_model_embeds_everything_again(
    trained: dict, music: Path, full_index: Path, tmp_path: Path
) -> None:
    import torch

    from modeling_music_clip import MusicClipModel

    changed = tmp_path / "changed"
    shutil.copytree(trained["model"], changed)
    model = MusicClipModel.from_pretrained(changed)
    with torch.no_grad():
        next(model.audio_projection.parameters()).add_(0.01)
    model.save_pretrained(changed)
    out = tmp_path / "idx"
    shutil.copytree(full_index, out)  # the old model's cache is there, and useless
    info = index(music, str(changed), out)
    assert info["embedded"] == 29 and info["cached"] == 0
    assert (
        info["model_fingerprint"] != json.loads((full_index / "index.json").read_text())["model_fingerprint"]
    )


@pytest.mark.slow
def test_like_an_excerpt_in_another_format_finds_its_track_first(
    full_index: Path, music: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for name in (
        "calm/calm_acoustic_1.opus",
        "happy/happy_acoustic_2.opus",
        "tender/tender_acoustic_1.opus",
    ):
        excerpt = tmp_path / (Path(name).stem + ".mp3")
        ffmpeg(music / name, excerpt, "-t", "20", "-ac", "1", "-ar", "22050")  # the first 20 s, MP3, mono
        matches = search_json(capsys, str(full_index), "--like", str(excerpt), "-k", "3")
        assert matches[0]["path"] == str(music / name), (name, matches)


@pytest.mark.slow
def test_a_tracks_own_caption_finds_it_in_the_top_five(
    trained: dict, full_index: Path, music: Path, capsys: pytest.CaptureFixture
) -> None:
    ranks = {}
    for track_id, caption in trained["captions"].items():
        stem = track_id.split("/", 1)[1]
        paths = [m["path"] for m in search_json(capsys, str(full_index), caption, "-k", "5")]
        ranks[stem] = next((i + 1 for i, p in enumerate(paths) if Path(p).stem == stem), None)
    assert None not in ranks.values(), ranks


@pytest.mark.slow
def test_bad_queries_and_unfinished_folders_are_clear_errors(
    full_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["search", str(tmp_path), "calm"]) == 2
    assert "not a finished index folder" in capsys.readouterr().err
    assert main(["search", str(full_index)]) == 2
    assert "either a text query or --like" in capsys.readouterr().err
    assert main(["search", str(full_index), "--like", str(tmp_path / "nope.mp3")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.slow
def test_the_space_serves_an_index_folder_with_the_approximate_index(
    trained: dict, music: Path, tmp_path: Path
) -> None:
    """`space/app.py --library IDX` over HTTP (gradio_client); the index is forced to the approximate type,
    which a library this small would otherwise not get (`EXACT_LIMIT`)."""
    from gradio_client import Client, handle_file
    from test_space import APP, PRELOAD, free_port, wait_for

    out = tmp_path / "idx"
    info = index(music, trained["model"], out, "--index-type", "approx")
    sys.path.insert(0, str(ROOT / "space"))
    from music_clip_library.library_index import index_factory

    assert info["index"]["factory"] == index_factory(29, approximate=True, dim=32)[0] != "Flat"
    assert f"Index type: `{info['index']['factory']}`" in (out / "README.md").read_text()
    ready, port, log = tmp_path / "ready", free_port(), tmp_path / "space.log"
    ready.touch()
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "GRADIO_TEMP_DIR": str(tmp_path / "gradio"),
           "MUSICCLIP_MODEL": trained["model"], "MUSICCLIP_CLASSIFIER": trained["classifier"],
           "MUSICCLIP_LIBRARY": str(out)}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", PRELOAD, str(ready), str(APP), "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for(url, proc, log, timeout=300)
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        track = music / "calm" / "calm_acoustic_1.opus"
        table, _note, *players = client.predict(
            trained["captions"]["immich/calm_acoustic_1"], 5, api_name="/search_text"
        )
        assert str(track) in [row[5] for row in table["data"]], table["data"]
        shown = [p for p in players if p.get("visible")]
        assert len(shown) == 5 and all(Path(p["value"]).stat().st_size > 1000 for p in shown)
        excerpt = tmp_path / "excerpt.mp3"
        ffmpeg(track, excerpt, "-t", "20")
        tracks, captions, *_ = client.predict(handle_file(str(excerpt)), 3, api_name="/search_clip")
        # The Space reads uploads its own way (stereo 48 kHz here); rank 1 is the CLI test's bar.
        assert str(track) in [row[5] for row in tracks["data"]] and captions["data"] == [], tracks["data"]
        points, note = client.predict("PCA", api_name="/library_map")
        assert len(points["data"]) == 29 and note.startswith("29 tracks (0 with captions)")
    finally:
        proc.kill()
        proc.wait()


def tiny_model_and_music(tmp_path: Path, minilm_path: str, tracks: list[Path]) -> tuple[Path, Path]:
    """A random tiny model folder and a folder holding copies of `tracks` (the default-run checks)."""
    from conftest import tiny_config, tiny_processor

    from modeling_music_clip import MusicClipModel

    model_dir = tmp_path / "model"
    config = tiny_config()
    MusicClipModel(config).save_pretrained(model_dir)
    tiny_processor(minilm_path, config).save_pretrained(model_dir)
    music = tmp_path / "music"
    music.mkdir()
    for track in tracks:
        shutil.copy(track, music / track.name)
    return model_dir, music


def test_quick_index_rerun_reuses_every_embedding(
    tmp_path: Path, immich_tracks: list[Path], minilm_path: str
) -> None:
    """The default-run check (a random tiny model, four files): index, re-run from the cache, search by audio."""
    model_dir, music = tiny_model_and_music(tmp_path, minilm_path, immich_tracks[::7])
    first = index(music, str(model_dir), tmp_path / "idx")
    again = index(music, str(model_dir), tmp_path / "idx")
    assert (first["embedded"], first["cached"], again["embedded"], again["cached"]) == (4, 0, 0, 4)
    excerpt = tmp_path / "excerpt.flac"
    ffmpeg(music / immich_tracks[7].name, excerpt, "-ss", "4", "-t", "20")
    assert main(["search", str(tmp_path / "idx"), "--like", str(excerpt), "-k", "1"]) == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_damaged_model_weights_are_a_clear_error_and_write_no_index(
    tmp_path: Path, immich_tracks: list[Path], minilm_path: str, capsys: pytest.CaptureFixture, workers: str
) -> None:
    model_dir, music = tiny_model_and_music(tmp_path, minilm_path, immich_tracks[:2])
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a cut download
    out = tmp_path / "idx"
    assert (
        main(["index", str(music), "--model", str(model_dir), "--output", str(out), "--workers", workers])
        == 2
    )
    err = capsys.readouterr().err
    # In process the loader's own reason; from the pool, the pool's message after the worker's traceback.
    assert "cannot load the model" in err
    assert "music-clip index: error:" in err and not (out / "index.json").exists()
