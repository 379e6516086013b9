"""`train.py sweep --protocol probe`: frozen towers, a logistic regression on their clip embeddings, the same
cells and report as the finetuning sweep."""

from __future__ import annotations

import json

from test_train import write_dataset

import train


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
    assert "holds a probe cell; a --protocol finetune sweep needs its own --output" in capsys.readouterr().err
