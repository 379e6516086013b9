"""Triplet and matching pretraining on a build whose held-out split is one track (a `--clip-seconds` build of a
few tracks): the held-out batches hold one group, which STL/SMM cannot score; they are counted, not fatal."""

from __future__ import annotations

import json
import shutil
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_train import _pretrain_args, write_dataset

import train


def clip_build(root):
    """The fixture corpus with its 12 captions rows as clips of 4 tracks (3 clips a track, one group each)."""
    base = write_dataset(root.with_name(root.name + "-base"), n_captions=12)
    shutil.copytree(base, root)  # a fresh folder name: datasets reuses the Arrow cache of a same-named one
    name = "captions/train-00000-of-00001.parquet"
    table = pq.read_table(base / name)
    groups = pa.array([f"track{i // 3}" for i in range(table.num_rows)])
    pq.write_table(
        table.set_column(table.schema.get_field_index("group_id"), "group_id", groups), root / name
    )
    return root


@pytest.mark.parametrize("objective", ["triplet", "matching"])
def test_pretraining_with_a_one_track_heldout_split_finishes(tmp_path, objective) -> None:
    dataset = clip_build(tmp_path / f"clips-{uuid.uuid4().hex[:8]}")
    out = tmp_path / objective
    # 4 tracks, 0.25 held out: one track (3 clips); two epochs, past the first held-out evaluation.
    assert train.main([*_pretrain_args(dataset, objective, out, "--epochs", "2"), "--holdout", "0.25"]) == 0
    result = json.loads((out / "train_results.json").read_text())
    assert result["heldout_tracks"] == 3 and len(result["history"]) == 2, result
    for record in result["history"]:
        assert record["heldout_loss"] is None and record["heldout_skipped_batches"] == 1, record
    shutil.rmtree(out)
