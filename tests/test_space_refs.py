"""What the Space loads: a local path or, asked for explicitly, a Hub repo at a named revision.

The Hub is a local HTTP server (HF_ENDPOINT) that records every request and answers 404, so a test sees exactly
what would have been fetched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

LOADS = """
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]  # the Space's modules, then the repository's
from inference import ContrastiveModel, GenreClassifier
from music_clip_library.library_index import load_library
from build_dataset import load_feature_extractor
from music_clip_train.data import load_captions
from music_clip_train.models import load_pretrained
out = {}
for name, load in [
    ("train --dataset", lambda: load_captions("data/music21-quick")),
    ("train --init", lambda: load_pretrained("runs/supcon")),
    ("build --feature-extractor", lambda: load_feature_extractor("runs/fe")),
    ("typo model", lambda: ContrastiveModel("runs/supcon")),
    ("typo classifier", lambda: GenreClassifier("runs/classifier")),
    ("missing library", lambda: load_library("data/music21-quick")),
    ("unpinned hub model", lambda: ContrastiveModel("hub:someone/unpinned")),
    ("pinned hub model", lambda: ContrastiveModel("hub:someone/pinned@0123abcd")),
]:
    try:
        load()
        out[name] = "loaded"
    except Exception as err:
        out[name] = f"{type(err).__name__}: {err}"
print(json.dumps(out))
"""


class _Hub(BaseHTTPRequestHandler):
    paths: list[str]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def _answer(self) -> None:
        self.paths.append(self.path)
        body = b'{"error": "Repository not found"}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = _answer  # noqa: N815 - stdlib names


@pytest.fixture
def hub() -> Iterator[tuple[str, list[str]]]:
    paths: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Hub", (_Hub,), {"paths": paths}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", paths
    server.shutdown()
    server.server_close()


def test_only_an_explicit_hub_ref_reaches_the_hub_and_remote_code_needs_a_revision(
    hub, tmp_path: Path
) -> None:
    endpoint, paths = hub
    env = {
        **os.environ,
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_DATASETS_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_ETAG_TIMEOUT": "5",
        "HF_HUB_DOWNLOAD_TIMEOUT": "5",
    }
    done = subprocess.run(
        [sys.executable, "-c", LOADS, str(REPO / "space"), str(REPO)],
        cwd=tmp_path,  # where none of the local paths exists
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    fetched = [p for p in paths if any(name in p for name in ("runs/", "music21-quick"))]
    assert not fetched, f"a missing local path was fetched from the Hub: {fetched}"
    for name in ("typo model", "typo classifier", "missing library"):
        assert out[name].startswith("FileNotFoundError") and "not found" in out[name], out[name]
    for name in ("train --dataset", "train --init", "build --feature-extractor"):
        assert "not found" in out[name], out[name]  # an input error, before anything is fetched
    assert "revision" in out["unpinned hub model"] and not [p for p in paths if "unpinned" in p]
    assert [p for p in paths if "someone/pinned" in p and "0123abcd" in p], paths  # asked at that revision


def test_a_model_card_links_only_a_hub_dataset() -> None:
    from music_clip_train.cards import _front_matter

    assert "datasets:" not in _front_matter(
        ["x"], "audio-classification", "data/music21-quick"
    )  # a local folder
    hub = _front_matter(["x"], "audio-classification", "hub:someone/music21@0123abcd")
    assert "datasets:\n- someone/music21\n" in hub
