"""The main job's last stage, `space/app.py --warm-library`: the library's audio and caption embeddings and
FAISS indexes land in the Space's cache, so the next start loads them instead of embedding (test_space's
library, a random tiny model)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_library import tiny_model_and_music
from test_space import build_library

ROOT = Path(__file__).resolve().parents[1]


def test_warm_library_fills_the_cache_the_space_then_loads(
    tmp_path: Path, immich_tracks: list[Path], minilm_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feature_extraction_music_clip import MusicClipFeatureExtractor

    model_dir, _ = tiny_model_and_music(tmp_path, minilm_path, [])
    library = tmp_path / "library"
    build_library(library, MusicClipFeatureExtractor.from_pretrained(model_dir))
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    argv = ["--model", str(model_dir), "--library", str(library), "--device", "cpu", "--warm-library"]
    proc = subprocess.run([sys.executable, str(ROOT / "space" / "app.py"), *argv],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "library cache ready: 20 tracks, 10 captions" in proc.stdout, proc.stdout

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.syspath_prepend(str(ROOT / "space"))
    from inference import ContrastiveModel

    from music_clip_library.library_index import Library

    def no_embedding(*_args):
        raise AssertionError("the warmed cache was not used: the Space embedded again")

    model = ContrastiveModel(str(model_dir))
    monkeypatch.setattr(model, "audio_embeddings", no_embedding)
    monkeypatch.setattr(model, "text_embeddings", no_embedding)
    served = Library(str(library), model)
    assert len(served) == 20 and len(served.captions) == 10
