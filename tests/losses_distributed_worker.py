"""torchrun worker of tests/test_losses_distributed.py, and the pieces its one-process reference shares.

Each rank takes its first batch of track indices from an Accelerate-prepared DataLoader, collates it per objective
with the project's PretrainCollator, and computes loss and DDP-averaged gradients (model in eval mode: BatchNorm
uses its stored statistics). Rank 0 writes them with the batches every rank got; the test recomputes both on one
process from the same global batch (the ranks' rows in rank order) and compares.

    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 tests/losses_distributed_worker.py MODEL_DIR OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from configuration_music_clip import OBJECTIVES
from music_clip_train.collate import EpochBatchSampler, PretrainCollator
from music_clip_train.data import CaptionData

TRACKS = 8
PER_PROCESS_BATCH = 3
SEED = 11
# Uneven local batches: rank r keeps this many of its rows (a last batch split without padding).
UNEVEN_ROWS = (3, 2)


def group_of(track: int) -> int:
    """Tracks t and t + 3 share a group (a piece cut into clips), so groups reach across the ranks' batches."""
    return track % 3


def synthetic_data(n_mels: int, window_frames: int) -> CaptionData:
    """Eight tracks of random mels (one to three windows long) and three sentences each."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(window_frames // 2, 3 * window_frames, TRACKS)
    sentences = [[f"sentence {j} about track {i}" for j in range(3)] for i in range(TRACKS)]
    return CaptionData(
        track_ids=[f"t{i}" for i in range(TRACKS)],
        group_ids=[f"g{group_of(i)}" for i in range(TRACKS)],
        mels=[rng.normal(size=(int(n), n_mels)).astype(np.float32) for n in lengths],
        captions=[" ".join(s) for s in sentences],
        sentences=sentences,
    )


# Each objective alone, and one with the audio-audio term (groups reach across ranks: its pairs do too).
LOSS_CASES = {**{o: (o, 0.0) for o in OBJECTIVES}, "independent+audio": ("independent", 0.5)}


def loss_and_grads(model, batch: dict, tracks: list[int], case: str, backward) -> tuple[float, dict]:
    """A loss case's loss on `batch` (tracks in row order) and the gradients `backward` leaves on the model."""
    inner = getattr(model, "module", model)
    objective, weight = LOSS_CASES[case]
    inner.config.objective = objective
    inner.config.audio_contrast_weight = weight
    inner.zero_grad(set_to_none=True)
    groups = torch.tensor([group_of(t) for t in tracks])
    generator = torch.Generator().manual_seed(SEED + OBJECTIVES.index(objective))
    loss = model(**batch, audio_group=groups, generator=generator, return_loss=True).loss
    backward(loss)
    grads = {
        name: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().clone()
        for name, p in inner.named_parameters()
    }
    return loss.item(), grads


def collate(data: CaptionData, processor, objective: str, tracks: list[int]) -> dict:
    fe, tokenizer = processor.feature_extractor, processor.tokenizer
    batch = PretrainCollator(data, objective, fe, tokenizer, processor.text_max_length)(tracks)
    return {k: v for k, v in batch.items() if k != "audio_group"}  # the test passes its own groups


def main(model_dir: str, out_dir: str) -> None:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, gather_object
    from safetensors.torch import save_file
    from torch.utils.data import DataLoader

    from music_clip_train.models import load_pretrained

    # Unused parameters (e.g. the matching head under 1-Text) get no gradient: DDP must not wait for them.
    accelerator = Accelerator(kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    model, processor = load_pretrained(model_dir)
    model.eval()  # BatchNorm on its stored statistics: the same function on every rank and on one process
    data = synthetic_data(processor.feature_extractor.feature_size, processor.feature_extractor.window_frames)
    sampler = EpochBatchSampler(TRACKS, PER_PROCESS_BATCH, SEED)
    loader = DataLoader(list(range(TRACKS)), batch_sampler=sampler, collate_fn=torch.tensor)
    model, loader = accelerator.prepare(model, loader)
    mine = next(iter(loader)).tolist()
    local = {"even": mine, "uneven": mine[: UNEVEN_ROWS[accelerator.process_index]]}

    results, grads = {}, {}
    for case, tracks in local.items():
        for loss_case, (objective, _) in LOSS_CASES.items():
            batch = collate(data, processor, objective, tracks)
            loss, case_grads = loss_and_grads(model, batch, tracks, loss_case, accelerator.backward)
            results[f"{case}/{loss_case}"] = accelerator.gather(torch.tensor([loss])).tolist()
            grads.update({f"{case}/{loss_case}/{name}": g for name, g in case_grads.items()})
    # No generator: the ranks must still draw alike (from rank 0's global generator), even when their global
    # generators have drifted apart (e.g. dropout on batches of different shapes).
    torch.manual_seed(100 + accelerator.process_index)
    model.module.config.audio_contrast_weight = 0.0
    for objective in ("triplet", "matching"):
        model.module.config.objective = objective
        batch = collate(data, processor, objective, mine)
        with torch.no_grad():
            loss = model(
                **batch, audio_group=torch.tensor([group_of(t) for t in mine]), return_loss=True
            ).loss
        results[f"no-generator/{objective}"] = accelerator.gather(loss[None]).tolist()
    batches = {case: gather_object([tracks]) for case, tracks in local.items()}
    if accelerator.is_main_process:
        out = Path(out_dir)
        save_file(grads, out / "grads.safetensors")
        summary = {"world_size": accelerator.num_processes, "batches": batches, "losses": results}
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    main(*sys.argv[1:])
