"""Training commands on two real processes (`torchrun`, gloo on CPU) where what trains changes or is large:
finetuning across its unfreeze epoch, pretraining with the text tower trained.

A tiny random BERT (MiniLM's vocabulary and tokenizer) stands in for the text tower to keep each run short; it
has BERT's pooler, which the pooled output never reads (what DDP used to wait for).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_loop import _torchrun as torchrun
from test_train import _pretrain_args, write_dataset

import train

torch.set_num_threads(1)

TOWER = ("audio_encoder.", "audio_projection.")  # the classifier's audio tower (frozen, then trained)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("ds"))


def pretrain_argv(dataset: Path, out: Path, tower: Path, *extra: str) -> list[str]:
    return _pretrain_args(dataset, "supcon", out, "--text-tower", str(tower), *extra)  # extra sets the batch


@pytest.fixture(scope="module")
def pretrained(dataset, tiny_text_tower, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrained") / "supcon"
    assert train.main(pretrain_argv(dataset, out, tiny_text_tower, "--epochs", "1", "--batch-size", "8")) == 0
    return out


def finetune_argv(dataset: Path, init: Path, out: Path, batch_size: int) -> list[str]:
    # N = 20 leaves 16 fit clips: two global batches of 8 per epoch, split 4 + 4 on two processes.
    return [
        "finetune",
        "--dataset",
        str(dataset),
        "--init",
        str(init),
        "--output",
        str(out),
        "--n",
        "20",
        "--epochs",
        "3",
        "--unfreeze-epoch",
        "2",
        "--batch-size",
        str(batch_size),
        "--checkpoint-every",
        "1",
    ]


def _checkpoint_weights(out: Path, epoch: int) -> dict[str, torch.Tensor]:
    return load_file(out / "checkpoints" / f"step-{epoch:07d}" / "model.safetensors")


@pytest.mark.slow  # one 2-process run plus a 1-process one (~1-2 min on a busy 2-core machine)
def test_two_process_finetuning_across_the_unfreeze_epoch_matches_one_process_while_frozen(
    dataset, pretrained, tmp_path
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    assert train.main(finetune_argv(dataset, pretrained, one, batch_size=8)) == 0
    run = torchrun(finetune_argv(dataset, pretrained, two, batch_size=4))  # 2 x 4 = the same global batch
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((two / "results.json").read_text())
    assert [r["tower_frozen"] for r in result["history"]] == [True, True, False]
    assert result["launch"]["num_processes"] == 2 and result["launch"]["global_batch"] == 8
    # End of epoch 2, the last with the tower frozen: both runs took the same steps on the same global batches.
    a, b = _checkpoint_weights(one, 2), _checkpoint_weights(two, 2)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-6), key
    # Epoch 3 trained the tower on both processes (the checkpoint of epoch 3 holds the trained weights).
    after = _checkpoint_weights(two, 3)
    moved = [
        k for k in after if k.startswith(TOWER) and k.endswith("weight") and not torch.equal(after[k], b[k])
    ]
    assert any(k.startswith("audio_encoder.") for k in moved), moved


@pytest.mark.slow  # one 2-process run (~1 min on a busy 2-core machine)
def test_two_process_pretraining_trains_the_unfrozen_text_tower(dataset, tiny_text_tower, tmp_path) -> None:
    out = tmp_path / "unfrozen"
    argv = pretrain_argv(
        dataset, out, tiny_text_tower, "--no-freeze-text", "--epochs", "2", "--batch-size", "2"
    )
    run = torchrun(argv)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (run.stdout + run.stderr).count("== music-clip-train pretrain: done") == 1
    result = json.loads((out / "train_results.json").read_text())
    assert result["freeze_text"] is False and result["steps"] == 4 and result["launch"]["num_processes"] == 2
    trained, original = load_file(out / "model.safetensors"), load_file(tiny_text_tower / "model.safetensors")
    layer = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(trained[f"text_model.{layer}"], original[layer])  # the tower itself trained
