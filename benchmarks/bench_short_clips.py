"""Does the out-of-distribution flag fire on short clips? OOD flag rate and score of 1-3 s clips against 12-s
clips, cut from real recordings (the immich tracks) at offsets the model's OOD statistics never saw.

    PYTHONPATH=.:tests python benchmarks/bench_short_clips.py

The model is test_space's fixture (tiny towers fitted to the first 12 s of 20 immich tracks; OOD statistics from
those clips, threshold from the first 12 s of the 8 other tracks), so the numbers say how the flag behaves as a
clip gets shorter, not how a full-size model scores. Results: docs/short-clips.md.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_space import build_library, build_models, immich_tracks, unused_tracks  # noqa: E402

from feature_extraction_music_clip import MusicClipFeatureExtractor  # noqa: E402
from modeling_music_clip import MusicClipModel  # noqa: E402

LENGTHS_S = (1.0, 1.5, 2.0, 3.0, 5.0, 12.0)
OFFSETS_S = (14.0, 19.0)  # past the first 12 s, which the statistics and the threshold were fitted on


def excerpt(path: Path, start_s: float, seconds: float, fe) -> np.ndarray:
    rate = sf.info(path).samplerate
    audio, rate = sf.read(path, start=int(start_s * rate), frames=int(seconds * rate), dtype="float32",
                          always_2d=True)  # fmt: skip
    return fe.prepare_waveform(audio.T, rate)


@torch.inference_mode()
def scores(model, fe, tracks: list[Path], seconds: float) -> np.ndarray:
    out = []
    for path in tracks:
        for start in OFFSETS_S:
            feats = fe.window([fe.log_mel(excerpt(path, start, seconds, fe))])
            out.append(float(model.ood_score(feats["input_features"], feats["window_mask"])[0]))
    return np.asarray(out)


def main() -> None:
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="short-clips-"))
    fe = MusicClipFeatureExtractor()
    _, captions = build_library(root / "library", fe)
    pretrained, _ = build_models(root, root / "library", captions)
    model = MusicClipModel.from_pretrained(pretrained).eval()
    fe = MusicClipFeatureExtractor.from_pretrained(pretrained)
    threshold = float(model.config.ood_threshold)
    unseen = unused_tracks()
    seen = [p for p in immich_tracks() if p not in unseen]
    rows = []
    for seconds in LENGTHS_S:
        row = {"seconds": seconds}
        for name, tracks in (("seen_tracks", seen), ("unseen_tracks", unseen)):
            s = scores(model, fe, tracks, seconds)
            flagged = model.is_out_of_distribution(torch.from_numpy(s)).numpy()
            row[name] = {"clips": len(s), "flag_rate": round(float(flagged.mean()), 3),
                         "median_score": round(float(np.median(s)), 3)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps({"threshold": threshold, "window_s": fe.window_samples / fe.sampling_rate}))


if __name__ == "__main__":
    main()
