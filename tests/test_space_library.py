"""The Space's library made of several dataset folders (the renders and the real tracks), and the licence and
attribution of every track it lists or plays (test_space's library, a random tiny model, the Space's own
functions in-process)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_library import tiny_model_and_music
from test_space import build_library

ROOT = Path(__file__).resolve().parents[1]
LICENSE = "CC-BY-SA-3.0"
ATTRIBUTION = "Music by Jane Composer (examplegame-music)"


def credited_copy(source: Path, target: Path) -> None:
    """`source`'s tracks as another dataset folder, as the real-music source writes them: their own track ids
    and a `license` and `attribution` on every row."""
    from datasets import Dataset

    for parquet in source.rglob("*.parquet"):
        rows = Dataset.from_parquet(str(parquet))
        rows = rows.map(
            lambda track_id: {"track_id": track_id.replace("immich/", "real/")}, input_columns="track_id"
        )
        rows = rows.add_column("license", [LICENSE] * len(rows))
        rows = rows.add_column("attribution", [ATTRIBUTION] * len(rows))
        out = target / parquet.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        rows.to_parquet(out)
    (target / "README.md").write_text((source / "README.md").read_text())


@pytest.fixture()
def space_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The Space's modules (app, config, inference) as the Space imports them, with a private HF cache."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.syspath_prepend(str(ROOT / "space"))
    import app
    import config
    import inference

    return app, config, inference


@pytest.fixture()
def libraries(tmp_path: Path, immich_tracks: list[Path], minilm_path: str, space_modules) -> dict:
    """A tiny model; test_space's library as the "renders" and its credited copy as the "real" tracks."""
    from feature_extraction_music_clip import MusicClipFeatureExtractor

    model_dir, _ = tiny_model_and_music(tmp_path, minilm_path, [])
    renders, real = tmp_path / "renders", tmp_path / "real"
    build_library(renders, MusicClipFeatureExtractor.from_pretrained(model_dir))
    credited_copy(renders, real)
    model = space_modules[2].ContrastiveModel(str(model_dir), "cpu")
    return {"model": model, "model_dir": model_dir, "renders": renders, "real": real}


def own_audio(library, track_id: str) -> np.ndarray:
    row = library.audio_rows["track_id"].index(track_id)
    return np.asarray(library.embeddings[row]["audio_embedding"], np.float32)


def test_search_results_players_and_map_show_licence_and_attribution(libraries, space_modules) -> None:
    from music_clip_library.library_index import Library

    app, _config, _inference = space_modules
    library = Library(str(libraries["real"]), libraries["model"])
    query = own_audio(library, "real/calm_acoustic_1")
    hits = library.search_audio(query, 3)
    table = app.results_table(hits, app.RESULT_COLUMNS)
    assert table.track_id[0] == "real/calm_acoustic_1"
    assert set(table.license) == {LICENSE} and set(table.attribution) == {ATTRIBUTION}
    assert app.players(hits)[0]["label"].endswith(f" · licence {LICENSE} · {ATTRIBUTION}")
    captions = app.results_table(library.search_captions(query, 3), app.CAPTION_COLUMNS)
    assert set(captions.license) == {LICENSE} and set(captions.attribution) == {ATTRIBUTION}
    points = library.projection("PCA")
    assert set(points["license"]) == {LICENSE} and set(points["attribution"]) == {ATTRIBUTION}


def test_two_library_folders_are_searched_as_one(libraries, space_modules) -> None:
    from datasets import Dataset

    from music_clip_library.library_index import Library

    app, config, _inference = space_modules
    renders, real = libraries["renders"], libraries["real"]
    cfg = config.parse_args(
        ["--model", str(libraries["model_dir"]), "--library", str(renders), "--library", str(real)]
    )
    assert cfg.library == (str(renders), str(real))
    library = Library(cfg.library, libraries["model"])
    assert len(library) == 40 and len(library.captions) == 20

    # A track's own audio finds its two copies first, one from each folder; only the real one has a credit.
    hits = library.search_audio(own_audio(library, "real/calm_acoustic_1"), 2)
    table = app.results_table(hits, app.RESULT_COLUMNS).set_index("track_id")
    assert set(table.index) == {"immich/calm_acoustic_1", "real/calm_acoustic_1"}
    assert table.loc["real/calm_acoustic_1", ["license", "attribution"]].tolist() == [LICENSE, ATTRIBUTION]
    assert table.loc["immich/calm_acoustic_1", ["license", "attribution"]].tolist() == ["", ""]
    assert "licence" not in app.players(hits)[list(table.index).index("immich/calm_acoustic_1")]["label"]

    # The cache is keyed on every folder: rebuilding the second one gets a fresh index.
    captions = real / "captions" / "train-00000-of-00001.parquet"
    Dataset.from_parquet(str(captions)).select(range(5)).to_parquet(captions)
    rebuilt = Library(cfg.library, libraries["model"])
    assert rebuilt.cache_dir != library.cache_dir and len(rebuilt) == 35


def test_the_library_variable_names_several_folders(space_modules, monkeypatch: pytest.MonkeyPatch) -> None:
    _app, config, _inference = space_modules
    monkeypatch.setenv("MUSICCLIP_LIBRARY", "/srv/renders, /srv/real")
    assert config.parse_args([]).library == ("/srv/renders", "/srv/real")
    assert config.parse_args(["--library", "hub:user/songs@main"]).library == ("hub:user/songs@main",)
