"""Audio embedding throughput: MusicCLIP (processor + audio tower) against CLAP (feature extractor + audio tower),
and the whole path from a file on disk (decode → downmix → resample → log-mel → embedding) with stage shares.

    python benchmarks/bench_embedding.py [--threads 2] [--batch-size 8] [--clips 16]

Both models are random-init (weights do not change the cost); clips are the real tracks of
`immich-memories-music` (48 kHz stereo Opus, ~32 s). Everything runs in this process on the same clips.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

from audio_music_clip import decode_native, load_waveform
from configuration_music_clip import MINILM_TEXT_CONFIG, MusicClipConfig
from feature_extraction_music_clip import MusicClipFeatureExtractor
from modeling_music_clip import MusicClipModel


def tracks() -> list[Path]:
    import immich_memories_music

    return sorted((Path(immich_memories_music.__file__).parent / "tracks").rglob("*.opus"))


def timed(fn: Callable[[], object], repeats: int = 2) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def batches(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def music_clip(window_seconds: float) -> tuple[MusicClipFeatureExtractor, MusicClipModel]:
    config = MusicClipConfig(window_samples=int(window_seconds * 16000), text_config=dict(MINILM_TEXT_CONFIG))
    return MusicClipFeatureExtractor.from_model_config(config), MusicClipModel(config).eval()


def embed_music_clip(fe, model, waves: list[np.ndarray], rate: int, batch_size: int) -> None:
    with torch.inference_mode():
        for chunk in batches(waves, batch_size):
            model.get_audio_features(**fe(chunk, sampling_rate=rate))


def embed_clap(fe, model, waves: list[np.ndarray], rate: int, batch_size: int) -> None:
    with torch.inference_mode():
        for chunk in batches(waves, batch_size):
            inputs = fe(chunk, sampling_rate=rate, return_tensors="pt")
            model.get_audio_features(input_features=inputs["input_features"], is_longer=inputs["is_longer"])


def end_to_end(paths: list[Path], fe, model, batch_size: int, workers: int) -> None:
    """Decode + log-mel in worker threads (FFmpeg and torch release the GIL), windows + CNN in this thread."""

    def load(path: Path) -> np.ndarray:
        return fe.log_mel(fe.prepare_waveform(path))  # the one audio path: decode, downmix, resample

    with ThreadPoolExecutor(workers) as pool, torch.inference_mode():
        pending = [pool.submit(load, p) for p in paths]
        for chunk in batches(pending, batch_size):
            model.get_audio_features(**fe.window([f.result() for f in chunk]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--clips", type=int, default=16, help="clips for the model comparison")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    paths = tracks()
    stereo = [decode_native(p) for p in paths[: args.clips]]
    rate = stereo[0][1]
    waves = [w for w, _ in stereo]  # (2, samples) at 48 kHz, as a user would pass them
    seconds = sum(w.shape[1] for w in waves) / rate
    print(
        f"{len(waves)} clips, {seconds:.0f} s of {rate} Hz stereo audio, {args.threads} threads, batch {args.batch_size}"
    )

    # The default ClapConfig is unfused, so its extractor must not fuse either (4 channels vs 1).
    clap_fe, clap = ClapFeatureExtractor(truncation="rand_trunc"), ClapModel(ClapConfig()).eval()
    mono = [
        w.mean(0) for w in waves
    ]  # CLAP's extractor takes mono only: its downmix is not timed (in its favour)
    t_clap = timed(lambda: embed_clap(clap_fe, clap, mono, rate, args.batch_size), repeats=1)
    print(
        f"CLAP (HTSAT, unfused, 10 s)       {len(waves) / t_clap:8.2f} clips/s  {seconds / t_clap:8.1f}x real time"
    )
    for label, window in (("MusicCLIP, 15 s windows", 15.0), ("MusicCLIP, thesis 4.5 min window", 270.0)):
        fe, model = music_clip(window)
        t = timed(lambda fe=fe, model=model: embed_music_clip(fe, model, waves, rate, args.batch_size))
        print(
            f"{label:34s} {len(waves) / t:8.2f} clips/s  {seconds / t:8.1f}x real time  "
            f"{t_clap / t:6.1f}x CLAP's throughput"
        )

    # The whole path from files, with each stage's share measured alone on the same files.
    fe, model = music_clip(15.0)
    decoded: list[np.ndarray] = []
    t_decode = timed(
        lambda: decoded.__setitem__(
            slice(None), [load_waveform(p, target_rate=fe.sampling_rate) for p in paths]
        ),
        repeats=1,
    )
    all_seconds = sum(w.size for w in decoded) / fe.sampling_rate
    mels: list[np.ndarray] = []
    t_mel = timed(lambda: mels.__setitem__(slice(None), [fe.log_mel(w) for w in decoded]), repeats=1)
    with torch.inference_mode():
        t_model = timed(
            lambda: [model.get_audio_features(**fe.window(c)) for c in batches(mels, args.batch_size)], 1
        )
    t_total = timed(lambda: end_to_end(paths, fe, model, args.batch_size, workers=args.threads), repeats=1)
    serial = t_decode + t_mel + t_model
    print(f"\nfile → embedding, {len(paths)} files, {all_seconds:.0f} s of audio:")
    for name, t in (
        ("decode+downmix+resample (audio_music_clip → 16 kHz)", t_decode),
        ("log-mel", t_mel),
        ("windows + CNN + v/z", t_model),
    ):
        print(f"  {name:52s} {all_seconds / t:8.0f}x real time  {t / serial:6.1%} of the serial time")
    print(f"  serial sum                                           {all_seconds / serial:8.0f}x real time")
    print(
        f"  overlapped ({args.threads} decode threads)                          "
        f"{all_seconds / t_total:8.0f}x real time  ({serial / t_total:.2f}x the serial path)"
    )


if __name__ == "__main__":
    main()
