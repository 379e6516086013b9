"""Two processes (torchrun, gloo on CPU) score the global batch exactly as one process does, for every objective
and for one with the audio-audio term.

The worker is tests/losses_distributed_worker.py; this test builds the model it loads and recomputes every loss and
gradient on one process from the global batch the ranks reported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, tiny_config, tiny_processor
from losses_distributed_worker import (
    LOSS_CASES,
    UNEVEN_ROWS,
    collate,
    group_of,
    loss_and_grads,
    synthetic_data,
)
from safetensors.torch import load_file
from test_space import free_port

from modeling_music_clip import MusicClipModel
from music_clip_train.models import load_pretrained


def launch(model_dir, out_dir) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),  # this checkout, not whatever the editable install points at
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
        str(REPO / "tests" / "losses_distributed_worker.py"), str(model_dir), str(out_dir),
    ]  # fmt: skip
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_two_processes_score_the_global_batch_like_one(tmp_path, minilm_path):
    torch.manual_seed(0)
    model_dir, out_dir = tmp_path / "model", tmp_path / "out"
    out_dir.mkdir()
    MusicClipModel(tiny_config()).save_pretrained(model_dir)
    tiny_processor(minilm_path).save_pretrained(model_dir)

    run = launch(model_dir, out_dir)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads((out_dir / "summary.json").read_text())
    grads_2 = load_file(out_dir / "grads.safetensors")

    assert summary["world_size"] == 2
    rank0, rank1 = summary["batches"]["even"]
    assert rank0 and rank1 and not set(rank0) & set(rank1), (
        f"the ranks got overlapping batches {rank0}, {rank1}"
    )
    assert [len(b) for b in summary["batches"]["uneven"]] == list(UNEVEN_ROWS)
    # Groups reach across the ranks, so the gathered group ids decide which cross-rank pairs are negatives.
    assert {group_of(t) for t in rank0} & {group_of(t) for t in rank1}

    # The audio-audio case has pairs to score (a group on both ranks), so it is not the plain objective again.
    assert summary["losses"]["even/independent+audio"][0] > summary["losses"]["even/independent"][0]
    for objective in ("triplet", "matching"):
        losses = summary["losses"][f"no-generator/{objective}"]
        assert losses[0] == losses[1], f"{objective} without a generator: the ranks drew differently"
    model, processor = load_pretrained(model_dir)
    model.eval()
    fe = processor.feature_extractor
    data = synthetic_data(fe.feature_size, fe.window_frames)
    worst_loss = worst_grad = 0.0
    for case, batches in summary["batches"].items():
        tracks = [t for batch in batches for t in batch]  # the global batch: rank 0's rows, then rank 1's
        for loss_case, (objective, _) in LOSS_CASES.items():
            batch = collate(data, processor, objective, tracks)
            loss_1, grads_1 = loss_and_grads(model, batch, tracks, loss_case, lambda loss: loss.backward())
            losses_2 = summary["losses"][f"{case}/{loss_case}"]
            assert losses_2[0] == losses_2[1], f"{case}/{loss_case}: the ranks disagree on the loss"
            assert losses_2[0] == pytest.approx(loss_1, abs=1e-5), f"{case}/{loss_case} loss"
            worst_loss = max(worst_loss, abs(losses_2[0] - loss_1))
            # Relative per parameter; a gradient that is zero in exact arithmetic (attention key biases) is
            # float noise on both sides, so it is measured against a millionth of the whole gradient.
            floor = 1e-6 * torch.cat([g.flatten() for g in grads_1.values()]).norm()
            for name, grad_1 in grads_1.items():
                grad_2 = grads_2[f"{case}/{loss_case}/{name}"]
                error = ((grad_2 - grad_1).norm() / torch.maximum(grad_1.norm(), floor)).item()
                assert error <= 1e-4, f"{case}/{loss_case}: gradient of {name} off by {error:.2e} (relative)"
                worst_grad = max(worst_grad, error)
    print(f"worst |loss diff| {worst_loss:.2e}, worst relative gradient error {worst_grad:.2e}")
