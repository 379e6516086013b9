"""`train.py sweep --protocol probe`: frozen towers, a logistic regression on their clip embeddings, the same
cells and report as the finetuning sweep."""

from __future__ import annotations

import json

import numpy as np
from test_train import _pretrain_args, write_dataset

import train
from music_clip_train.probe import fit_and_predict


def test_probe_sweep_tells_separable_classes_apart_and_keeps_its_cells_apart(tmp_path, capsys) -> None:
    dataset = write_dataset(tmp_path / "ds", n_train=24, n_test=12, separable=True)
    out = tmp_path / "probe"
    argv = f"sweep --dataset {dataset} --output {out} --objectives none --sizes 6 24 --seeds 0 1 --protocol probe"
    assert train.main(argv.split()) == 0
    assert "4 cells run, 0 skipped" in capsys.readouterr().out
    runs = json.loads((out / "runs.json").read_text())
    assert {(r["n_used"], r["seed"]) for r in runs} == {(6, 0), (6, 1), (24, 0), (24, 1)}
    assert all(r["protocol"] == "probe" and r["n_fit"] == r["n_used"] for r in runs)
    # Even a random tower's features keep which third of the bands is loud: a probe on 24 clips finds it.
    assert min(r["test"]["macro_f1"] for r in runs if r["n_used"] == 24) >= 0.9
    assert "--protocol probe" in (out / "README.md").read_text()
    assert train.main(argv.split()) == 0 and "0 cells run, 4 skipped" in capsys.readouterr().out
    # A folder of probe cells is never mistaken for finished finetuning cells (or the other way round).
    finetune = argv.replace("--protocol probe", "--protocol finetune").split()
    assert train.main(finetune) == 2
    assert (
        "holds a --protocol probe cell; a --protocol finetune sweep needs its own --output"
        in capsys.readouterr().err
    )


def test_sweep_counting_tracks_fits_every_clip_of_n_balanced_tracks(tmp_path, capsys) -> None:
    # 12 tracks of 3 clips (4 per class): N = 3 tracks is one per class, 9 clips.
    dataset = write_dataset(tmp_path / "ds", n_train=36, n_test=12, separable=True, clips_per_track=3)
    out = tmp_path / "tracks"
    argv = f"sweep --dataset {dataset} --output {out} --objectives none --seeds 0 1 --protocol probe --n-unit tracks"
    assert train.main([*argv.split(), "--sizes", "3", "6", "20"]) == 0
    assert "N=20 is more than the 12 training tracks; using 12" in capsys.readouterr().out
    runs = json.loads((out / "runs.json").read_text())
    assert {(r["n_used"], r["n_tracks"], r["n_clips"]) for r in runs} == {(3, 3, 9), (6, 6, 18), (12, 12, 36)}
    assert all(r["n_unit"] == "tracks" and r["n_fit"] == r["n_clips"] for r in runs)
    assert all(r["test"]["macro_f1"] >= 0.9 for r in runs if r["n_used"] == 3)  # one track of every class
    report = (out / "README.md").read_text()
    assert "--n-unit tracks" in report and "N counts labelled tracks" in report and "N=3: 9 clips" in report
    # A folder of track-counted cells is never read as clip-counted ones.
    assert train.main([*argv.replace("--n-unit tracks", "--n-unit clips").split(), "--sizes", "3"]) == 2
    assert (
        "holds a --n-unit tracks cell; a --n-unit clips sweep needs its own --output"
        in capsys.readouterr().err
    )


def test_probe_cells_of_a_pretrained_tower_use_its_window_and_report_as_its_row(tmp_path, capsys) -> None:
    dataset = write_dataset(tmp_path / "ds", n_train=24, n_test=12, separable=True)
    pretrained = tmp_path / "pretrained"
    assert train.main(_pretrain_args(dataset, "supcon", pretrained / "supcon", "--epochs", "1")) == 0
    out = tmp_path / "probe"
    argv = f"sweep --dataset {dataset} --output {out} --objectives none supcon --pretrained-dir {pretrained}"
    assert train.main([*argv.split(), "--sizes", "12", "--seeds", "0", "--protocol", "probe"]) == 0
    runs = {r["objective"]: r for r in json.loads((out / "runs.json").read_text())}
    window = json.loads((pretrained / "supcon" / "config.json").read_text())["window_samples"]
    assert runs["supcon"]["init"] == str(pretrained / "supcon") and runs["supcon"]["window_samples"] == window
    assert runs["none"]["window_samples"] == window  # the baseline sees the pretrained tower's window
    assert "| SCL |" in (out / "table.md").read_text()
    assert "linear probe" in (out / "README.md").read_text()


def test_probe_of_one_class_names_that_class() -> None:
    # N clips drawn by whole tracks can all be one track, so one class: no regression to fit, one answer.
    rng = np.random.default_rng(0)
    predictions = fit_and_predict(rng.random((3, 8)), np.array([2, 2, 2]), rng.random((5, 8)), seed=0)
    assert predictions.tolist() == [2] * 5
    two = fit_and_predict(
        np.array([[0.0], [0.1], [1.0], [1.1]]), np.array([0, 0, 1, 1]), np.array([[1.05]]), 0
    )
    assert two.tolist() == [1]
