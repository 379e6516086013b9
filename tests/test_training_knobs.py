"""The knobs every training command shares: precision from the environment, trackers, schedules, resuming from a
named checkpoint, checkpoint rotation, loader workers; evaluation's device; the cards' Hub metadata."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from test_train import REPO, write_dataset
from test_train_distributed import pretrain_argv

import train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("ds"))


def _run_cli(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow  # two training runs in fresh interpreters (~50 s on a busy 2-core machine)
def test_precision_comes_from_the_environment_unless_the_flag_says_otherwise(
    dataset, tiny_text_tower, tmp_path
) -> None:
    common = ("--epochs", "1", "--batch-size", "8")
    env_only, flag = tmp_path / "env", tmp_path / "flag"
    run = _run_cli(
        pretrain_argv(dataset, env_only, tiny_text_tower, *common), ACCELERATE_MIXED_PRECISION="bf16"
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((env_only / "train_results.json").read_text())
    assert result["mixed_precision"] == "bf16" == result["launch"]["mixed_precision"]
    assert "| mixed precision | bf16 |" in (env_only / "README.md").read_text()
    argv = pretrain_argv(dataset, flag, tiny_text_tower, *common, "--mixed_precision", "no")
    run = _run_cli(argv, ACCELERATE_MIXED_PRECISION="bf16")
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads((flag / "train_results.json").read_text())["mixed_precision"] == "no"


def test_tensorboard_gets_loss_and_the_scheduled_learning_rate(dataset, tiny_text_tower, tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    # 8 tracks, batch 4: 2 steps per epoch, 4 in all; linear schedule with 2 warm-up steps.
    knobs = ("--report_to", "tensorboard", "--logging_steps", "1", "--lr_scheduler_type", "linear")
    argv = pretrain_argv(dataset, out, tiny_text_tower, "--epochs", "2", "--batch-size", "4", *knobs)
    assert train.main([*argv, "--warmup_ratio", "0.5", "--max_grad_norm", "1.0"]) == 0
    events = EventAccumulator(str(out / "logs" / "pretrain"))
    events.Reload()
    loss = [e.value for e in events.Scalars("train/loss")]
    rate = [e.value for e in events.Scalars("train/learning_rate")]
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    history = json.loads((out / "train_results.json").read_text())["history"]
    for epoch, record in enumerate(history):  # the logged step losses average to each epoch's train loss
        assert np.mean(loss[2 * epoch : 2 * epoch + 2]) == pytest.approx(record["train_loss"], rel=1e-5)
    assert rate == pytest.approx([5e-4, 1e-3, 5e-4, 0.0])  # after each step: warm-up, then linear decay
    assert events.Scalars("eval/heldout_loss")[-1].step == 4
    assert all(e.value > 0 for e in events.Scalars("train/samples_per_second"))


def test_resume_from_a_named_checkpoint_with_workers_ends_with_the_same_weights(
    dataset, tiny_text_tower, tmp_path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    common = ("--epochs", "2", "--batch-size", "4", "--checkpoint-every", "1")
    assert train.main(pretrain_argv(dataset, first, tiny_text_tower, *common, "--save_total_limit", "3")) == 0
    kept = sorted(p.name for p in (first / "checkpoints").iterdir())
    assert kept == ["step-0000002", "step-0000003", "step-0000004"]  # the default keeps 2
    checkpoint = first / "checkpoints" / "step-0000002"
    extra = ("--resume_from_checkpoint", str(checkpoint), "--dataloader_num_workers", "1")
    assert train.main(pretrain_argv(dataset, second, tiny_text_tower, *common, *extra)) == 0
    result = json.loads((second / "train_results.json").read_text())
    assert result["resumed_from"] == str(checkpoint) and result["steps"] == 4
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_knobs_stop_before_training(dataset, tiny_text_tower, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    for extra, message in (
        (("--report_to", "no-such-tracker"), "--report_to no-such-tracker: not installed"),
        (("--resume_from_checkpoint", str(tmp_path / "nowhere")), "no checkpoint folder there"),
        (("--warmup_ratio", "1.5"), "--warmup_ratio must be in [0, 1)"),
    ):
        assert train.main(pretrain_argv(dataset, out, tiny_text_tower, *extra)) == 2
        assert message in capsys.readouterr().err and not out.exists()


def test_sweep_gives_each_cell_worker_its_own_gpu() -> None:
    from music_clip_train.sweep import cell_workers, worker_gpu

    assert (
        cell_workers(1, ["0", "1"]) == 2 and cell_workers(3, ["0", "1"]) == 3 and cell_workers(2, ["0"]) == 2
    )
    assert [worker_gpu(slot, ["4", "7"]) for slot in range(3)] == ["4", "7", "4"]
    assert worker_gpu(0, ["0"]) is None and worker_gpu(1, []) is None  # one GPU or none: nothing to spread


def test_cards_carry_licence_base_model_and_results_and_evaluate_adds_zero_shot(
    dataset, tiny_text_tower, tmp_path, capsys
) -> None:
    pretrained, classifier = tmp_path / "supcon", tmp_path / "clf"
    assert (
        train.main(pretrain_argv(dataset, pretrained, tiny_text_tower, "--epochs", "1", "--batch-size", "8"))
        == 0
    )
    argv = ["finetune", "--dataset", str(dataset), "--init", str(pretrained), "--output", str(classifier)]
    assert train.main([*argv, "--n", "12", "--epochs", "1", "--batch-size", "8"]) == 0
    for folder, base in ((pretrained, str(tiny_text_tower)), (classifier, str(pretrained))):
        card = ModelCard.load(folder / "README.md")
        assert card.data.license == "other" and card.data.base_model == base
        assert card.data.eval_results, folder
        assert card.text.count("## Citation") == 1  # one writer: the training card, not save_pretrained's too
    metrics = {r.metric_name for r in ModelCard.load(classifier / "README.md").data.eval_results}
    assert metrics == {"macro-F1", "accuracy"}
    assert (
        train.main(["evaluate", "--model", str(pretrained), "--dataset", str(dataset), "--device", "cpu"])
        == 0
    )
    names = {r.metric_name for r in ModelCard.load(pretrained / "README.md").data.eval_results}
    assert {"zero-shot accuracy", "text_to_music recall@1 (held-out)"} <= names
    assert (
        train.main(["evaluate", "--model", str(pretrained), "--dataset", str(dataset), "--device", "cud"])
        == 2
    )
    assert "--device 'cud'" in capsys.readouterr().err


def test_a_run_recorded_before_the_knobs_existed_still_counts_as_finished(tmp_path) -> None:
    from music_clip_train.checkpoints import finished_result

    recorded = {
        "dataset": "d",
        "epochs": 2,
        "mixed_precision": "no",
        "sync_batchnorm": False,
        "resume": False,
    }
    (tmp_path / "results.json").write_text(json.dumps({"args": recorded}))
    now = {
        **recorded,
        "resume": True,
        "lr_scheduler_type": "constant",
        "warmup_ratio": 0.0,
        "max_grad_norm": 0.0,
    }
    now.update(report_to=["tensorboard"], logging_steps=5, dataloader_num_workers=2, save_total_limit=2)
    assert (
        finished_result(tmp_path / "results.json", now) is not None
    )  # defaults, or nothing the result shows
    assert finished_result(tmp_path / "results.json", {**now, "lr_scheduler_type": "linear"}) is None
    assert finished_result(tmp_path / "results.json", {**now, "mixed_precision": "bf16"}) is None


def test_the_sweep_budget_flag_keeps_its_first_name() -> None:
    """`--budget` names how long each run trains; `--profile`, the flag's first name, still means the same."""
    import train

    base = ["sweep", "--dataset", "d", "--output", "o"]
    new = train.build_parser().parse_args([*base, "--budget", "cpu"])
    old = train.build_parser().parse_args([*base, "--profile", "cpu"])
    assert new.budget == old.budget == "cpu" and not hasattr(new, "profile")
