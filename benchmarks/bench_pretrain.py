"""Pretraining steps/s: stored mels + cached frozen text tower (what `train.py pretrain` does) against decoding the
audio and running the text tower on every step (the naive loop), same batch, same model, one process.

    python benchmarks/bench_pretrain.py                    # 8 real tracks of the immich-memories-music wheel
    python benchmarks/bench_pretrain.py --steps 10 --batch 16 --threads 2

Both loops do the same optimizer step on the same SCL batch (a track and its three sentences); only where the
inputs come from differs. The text tower is frozen in both; the naive loop re-encodes the sentences every step.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from music_clip_common.experiment import CORPUS_WINDOW_SAMPLES as WINDOW_SAMPLES  # noqa: E402
from music_clip_train.evaluation import pooled_texts  # noqa: E402
from music_clip_train.models import mel_statistics, new_pretrain_model, new_processor  # noqa: E402


def real_tracks(count: int) -> list[Path]:
    import immich_memories_music

    tracks = sorted((Path(immich_memories_music.__file__).parent / "tracks").rglob("*.opus"))
    return tracks[:count]


def sentences_for(path: Path) -> list[str]:
    mood, style, _ = path.stem.split("_")
    return [
        f"The music feels {mood}.",
        f"It is an {style} piece about {mood} moments.",
        f"A {mood} {style} track.",
    ]


def timed(step, steps: int) -> float:
    step()  # warm-up (allocations, first-call overheads)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    tracks = real_tracks(args.batch)
    texts = [s for path in tracks for s in sentences_for(path)]
    model = new_pretrain_model("supcon", WINDOW_SAMPLES, None)
    model.freeze_text_model()
    model.train()  # the frozen text tower stays in eval mode
    probe = new_processor(model.config, None, None, None).feature_extractor
    # What the dataset builder stores once per track: the log-mel of the decoded audio.
    stored = [probe.log_mel(probe.prepare_waveform(p)) for p in tracks]  # the builder's audio path
    processor = new_processor(model.config, *mel_statistics(stored), None)
    fe, tokenizer = processor.feature_extractor, processor.tokenizer
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    text_audio_index = torch.arange(len(tracks)).repeat_interleave(3)

    def train_step(inputs: dict, text_pooled: torch.Tensor | None) -> None:
        loss = model(
            **inputs, text_pooled=text_pooled, text_audio_index=text_audio_index, return_loss=True
        ).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    cache = pooled_texts(model, texts, tokenizer, model.config.text_max_length)  # once, before training

    def fast_step() -> None:
        train_step(dict(fe.window(stored)), cache)

    def naive_step() -> None:
        decoded = [sf.read(path, dtype="float32") for path in tracks]
        rate = decoded[0][1]  # the wheel's tracks all share one rate (48 kHz)
        inputs = dict(fe([audio for audio, _ in decoded], sampling_rate=rate))
        inputs.update(
            tokenizer(
                texts,
                padding=True,
                truncation=True,
                max_length=model.config.text_max_length,
                return_tensors="pt",
            )
        )
        inputs.pop("token_type_ids", None)
        train_step(inputs, None)

    seconds = sum(sf.info(p).duration for p in tracks)
    fast = timed(fast_step, args.steps)
    naive = timed(naive_step, args.steps)
    print(
        f"batch: {len(tracks)} real tracks ({seconds:.0f} s of Opus audio), {len(texts)} sentences, SCL, "
        f"window {WINDOW_SAMPLES} samples, torch threads {args.threads}"
    )
    print(f"stored mels + cached frozen text tower: {fast:.2f} steps/s")
    print(f"decode audio + run text tower each step: {naive:.2f} steps/s")
    print(f"speed-up: {fast / naive:.1f}x")


if __name__ == "__main__":
    main()
