"""The shared training loop: done markers, group ids, several processes, parallel sweep cells.

Same tiny dataset format as test_train.py (random mels, the real packaged MiniLM text tower).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_train import WINDOW, write_dataset

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
