"""The shared training loop: done markers, group ids, several processes, parallel sweep cells.

Same tiny dataset format as test_train.py (random mels, the real packaged MiniLM text tower).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_same_training_result
from test_train import REPO, WINDOW, write_dataset

import train
from configuration_music_clip import MusicClipConfig

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("ds"))


def _sweep(dataset: Path, out: Path, *extra: str) -> list[str]:
    return [
        "sweep",
        "--dataset",
        str(dataset),
        "--output",
        str(out),
        "--sizes",
        "12",
        "--seeds",
        "0",
        "--profile",
        "quick",
        "--pretrain-epochs",
        "1",
        "--finetune-epochs",
        "1",
        "--batch-size",
        "8",
        *extra,
    ]


def test_sweep_pretrains_again_over_a_folder_cut_during_its_final_save(dataset, tmp_path, capsys) -> None:
    # What a kill inside `save_pretrained` leaves: config.json written, the weights cut short, no results file.
    folder = tmp_path / "sweep" / "pretrained" / "ntxent"
    MusicClipConfig(objective="ntxent", window_samples=WINDOW).save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{")
    assert train.main(_sweep(dataset, tmp_path / "sweep", "--objectives", "ntxent")) == 0
    assert "1 cells run, 0 skipped" in capsys.readouterr().out
    result = json.loads((folder / "train_results.json").read_text())
    assert result["objective"] == "ntxent" and result["steps"] == 1
    from safetensors.torch import load_file

    assert "audio_projection.z.weight" in load_file(folder / "model.safetensors")


def test_a_cut_cell_results_file_is_run_again(dataset, tmp_path, capsys) -> None:
    out = tmp_path / "sweep"
    argv = _sweep(dataset, out, "--objectives", "none")
    assert train.main(argv) == 0
    cell = out / "runs" / "none" / "n12-seed0" / "results.json"
    whole = json.loads(cell.read_text())
    assert whole["objective"] == "none" and not list(cell.parent.glob(".*.tmp"))
    capsys.readouterr()
    cell.write_bytes(b"")  # a kill while the file was written in place
    assert train.main(argv) == 0
    assert "1 cells run, 0 skipped" in capsys.readouterr().out
    again = json.loads(cell.read_text())
    assert again["test"] == whole["test"]
    assert len(json.loads((out / "runs.json").read_text())) == 1


@pytest.mark.slow  # spawns two fresh interpreters (~30 s idle, minutes on a loaded machine)
def test_sweep_jobs_runs_cells_as_parallel_processes_and_skips_them_after(dataset, tmp_path, capsys) -> None:
    out = tmp_path / "sweep"
    argv = _sweep(dataset, out, "--objectives", "none", "--seeds", "0", "1", "--jobs", "2")
    assert train.main(argv) == 0
    assert "2 cells run, 0 skipped" in capsys.readouterr().out
    runs = json.loads((out / "runs.json").read_text())
    assert sorted(r["seed"] for r in runs) == [0, 1] and all(r["objective"] == "none" for r in runs)
    assert train.main(argv) == 0
    assert "0 cells run, 2 skipped" in capsys.readouterr().out


def test_collate_carries_a_stable_int64_group_per_row() -> None:
    from music_clip_train.collate import PretrainCollator, group_key

    # A fixed value: the same in every process and run (Python's str hash is salted per process).
    assert group_key("bwv 1.6") == -8439142988634864116 != group_key("bwv 1.7")

    class Data:
        mels = [np.zeros((70, 64), np.float32)] * 3
        captions = ["a", "b", "c"]
        sentences = [["a.", "b.", "c."]] * 3
        group_ids = ["piece1", "piece2", "piece1"]  # two windows of one piece

    class Extractor:
        def window(self, mels):
            return {"input_features": torch.zeros(len(mels), 1, 64, 65)}

    batch = PretrainCollator(Data(), "supcon", Extractor(), cached_text=True)([0, 1, 2])
    assert batch["audio_group"].dtype == torch.int64
    assert batch["audio_group"].tolist() == [group_key("piece1"), group_key("piece2"), group_key("piece1")]


def test_sampler_splits_the_global_batch_without_duplicating_rows() -> None:
    from music_clip_train.collate import EpochBatchSampler

    one = EpochBatchSampler(21, 8, seed=0).batches()
    ranks = [EpochBatchSampler(21, 4, seed=0, num_replicas=2, rank=r).batches() for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(one)  # every rank takes the same number of steps
    for whole, part0, part1 in zip(one, *ranks):
        assert part0 + part1 == whole and part0 and part1  # split, never padded
    assert sorted(i for b in ranks[0] + ranks[1] for i in b) == list(range(21))


def _torchrun(args: list[str]) -> subprocess.CompletedProcess:
    """Two real CPU processes (gloo), as the README launches them; `--` keeps torchrun from reading the command's
    flags (`--n`) as its own."""
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--"]
    return subprocess.run(
        [*command, str(REPO / "train.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _pretrain(dataset: Path, out: Path, *extra: str) -> list[str]:
    return [
        "pretrain",
        "--dataset",
        str(dataset),
        "--objective",
        "triplet",  # samples with the RNG: equality also checks the RNG states of both processes
        "--output",
        str(out),
        "--holdout",
        "0.2",
        "--epochs",
        "2",
        "--batch-size",
        "2",  # per process: 8 tracks = 2 global batches of 4 per epoch
        *extra,
    ]


@pytest.mark.slow  # three 2-process runs (~1 min each on an idle 2-core machine)
def test_two_process_pretraining_resumes_after_kill_9_to_the_same_weights(dataset, tmp_path) -> None:

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run = _torchrun(_pretrain(dataset, whole))
    assert run.returncode == 0, run.stderr[-3000:]
    log = run.stdout + run.stderr
    # One summary, one publish, one record per epoch: the other process trains and evaluates but writes nothing.
    assert log.count("== music-clip-train pretrain: done") == 1, log[-3000:]
    assert log.count("publish: wrote model, card and train_results.json") == 1
    assert log.count('{"epoch": 1, "step": 2,') == 1 and log.count('{"epoch": 2, "step": 4,') == 1
    result = json.loads((whole / "train_results.json").read_text())
    assert result["launch"]["num_processes"] == 2 and result["launch"]["distributed_type"] == "MULTI_CPU"
    assert (result["launch"]["per_process_batch"], result["launch"]["global_batch"]) == (2, 4)
    assert (
        result["steps"] == 4
        and "2 process(es) × 2 per process = global batch 4" in (whole / "README.md").read_text()
    )

    common = ["--checkpoint-every", "1"]
    crash = _torchrun(_pretrain(dataset, killed, *common, "--debug-kill-after-step", "4"))
    assert crash.returncode != 0 and not (killed / "train_results.json").exists()
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["step-0000002", "step-0000003"]
    resumed = _torchrun(_pretrain(dataset, killed, *common, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_training_result(whole, killed)


def test_sync_batchnorm_is_refused_on_cpu_before_anything_is_built(dataset, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    argv = [
        "pretrain",
        "--dataset",
        str(dataset),
        "--objective",
        "supcon",
        "--output",
        str(out),
        "--sync-batchnorm",
    ]
    assert train.main(argv) == 2
    assert "--sync-batchnorm needs GPUs" in capsys.readouterr().err and not out.exists()


def test_paired_order_keeps_each_pair_of_a_track_in_one_batch() -> None:
    from music_clip_train.sampler import EpochBatchSampler

    groups = ["a"] * 5 + ["b"] * 2 + ["c"] + ["d"] * 4 + ["e"]
    for seed in range(5):
        sampler = EpochBatchSampler(len(groups), 4, seed=seed, groups=groups)
        batches = sampler.batches()
        assert sorted(row for batch in batches for row in batch) == list(range(len(groups)))  # every row once
        assert len(sampler) == len(batches)
        # a: 2 pairs, b: 1, d: 2, and every pair inside one batch (c, e and a's fifth row pair up across groups).
        pairs = sum(
            sum(n // 2 for n in np.unique([groups[r] for r in batch], return_counts=True)[1])
            for batch in batches
        )
        assert pairs == 5, (seed, batches)
    assert sampler.batches() == EpochBatchSampler(len(groups), 4, seed=4, groups=groups).batches()
    sampler.set_epoch(1)
    assert sampler.batches() != EpochBatchSampler(len(groups), 4, seed=4, groups=groups).batches()
    with pytest.raises(ValueError, match="group of each"):
        EpochBatchSampler(3, 2, seed=0, groups=["a"])
    with pytest.raises(ValueError, match="even global batch"):
        EpochBatchSampler(3, 3, seed=0, groups=["a", "a", "b"])


def test_sampler_length_is_the_number_of_batches() -> None:
    from music_clip_train.sampler import EpochBatchSampler

    for size in range(2, 40):
        for batch_size, replicas in ((4, 1), (3, 2), (8, 3)):
            sampler = EpochBatchSampler(size, batch_size, seed=0, num_replicas=replicas)
            batches, step = sampler.global_batches(), batch_size * replicas
            assert len(sampler) == len(batches), (size, batch_size, replicas)
            assert sorted(row for batch in batches for row in batch) == list(range(size))
            assert all(len(batch) == step for batch in batches[:-1])
            # The last batch: whole, or a short one holding 2 rows per rank, or a short one merged in.
            assert len(batches) == 1 or 2 * replicas <= len(batches[-1]) < step + 2 * replicas
