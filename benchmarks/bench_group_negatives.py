"""How much group-aware negatives and a per-step sampling generator move STL/SMM pretraining losses.

    python benchmarks/bench_group_negatives.py                  # 96 synthetic tracks, two per group, 1 epoch
    python benchmarks/bench_group_negatives.py --epochs 3 --objectives triplet matching supcon

One `train.py pretrain` run per objective and variant, same seed and data:
  today      no group ids, STL/SMM draw from torch's global generator (what `train.py pretrain` does at 256fb5a);
  groups     the dataset's group ids reach the loss (two tracks of a group are never negatives);
  groups+gen also a generator seeded per step (the contract for multi-process training).
The groups are injected here (collator + forward wrappers) until the training loop passes them itself.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from unittest import mock

import torch

REPO = Path(__file__).resolve().parents[1]
# A private datasets cache: the shared one can answer a fresh temp folder with an older build's rows.
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="bench-group-negatives-cache-")
atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], ignore_errors=True)
sys.path[:0] = [
    str(REPO),
    str(REPO / "tests"),
]  # run from a checkout; the fixture dataset writer lives in tests

from test_train import write_dataset  # noqa: E402

from modeling_music_clip import MusicClipModel  # noqa: E402
from music_clip_train.collate import PretrainCollator  # noqa: E402
from music_clip_train.pretrain import PretrainArgs, run  # noqa: E402

VARIANTS = ("today", "groups", "groups+gen")


def grouped_dataset(root: Path, tracks: int) -> Path:
    """The test fixture corpus with tracks 2k and 2k+1 in one group (e.g. two clips of one piece)."""
    write_dataset(root, n_captions=tracks)
    import pandas as pd

    path = root / "captions/train-00000-of-00001.parquet"
    frame = pd.read_parquet(path)
    frame["group_id"] = [f"capg{i // 2}" for i in range(len(frame))]
    frame.to_parquet(path)
    return root


@contextlib.contextmanager
def variant(name: str, seed: int):
    if name == "today":
        yield
        return
    collate, forward = PretrainCollator.__call__, MusicClipModel.forward
    steps = iter(range(10**9))

    def collate_with_groups(self, indices):
        batch = collate(self, indices)
        ids = sorted(set(self.data.group_ids))
        batch["audio_group"] = torch.tensor([ids.index(self.data.group_ids[i]) for i in indices])
        return batch

    def forward_with_generator(self, *args, **kwargs):
        if kwargs.get("return_loss") and self.training:
            kwargs["generator"] = torch.Generator().manual_seed(seed * 1_000_003 + next(steps))
        return forward(self, *args, **kwargs)

    patches = [mock.patch.object(PretrainCollator, "__call__", collate_with_groups)]
    if name == "groups+gen":
        patches.append(mock.patch.object(MusicClipModel, "forward", forward_with_generator))
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        yield


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tracks", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--objectives", nargs="+", default=["triplet", "matching"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = grouped_dataset(Path(tmp) / "ds", args.tracks)
        print("objective  variant     train_loss  heldout_loss  (last epoch)")
        for objective in args.objectives:
            for name in VARIANTS:
                with variant(name, args.seed):
                    result = run(
                        PretrainArgs(
                            dataset=str(dataset),
                            objective=objective,
                            output=str(Path(tmp) / f"{objective}-{name}"),
                            epochs=args.epochs,
                            batch_size=args.batch_size,
                            holdout=0.2,
                            seed=args.seed,
                        )
                    )
                last = result["history"][-1]
                print(f"{objective:10} {name:11} {last['train_loss']:.6f}    {last['heldout_loss']:.6f}")


if __name__ == "__main__":
    main()
