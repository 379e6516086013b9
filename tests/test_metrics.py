"""The shipped `evaluate` metric modules: loaded by path (offline), checked against scikit-learn and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from music_clip_train.metric_modules import METRICS_DIR, load_metric


def test_modules_load_by_path_from_any_cwd(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the folder is found next to the package, not in the cwd
    load_metric.cache_clear()
    assert load_metric("macro_f1").name == "macro_f1"
    assert load_metric("retrieval").name == "retrieval"
    assert (METRICS_DIR / "macro_f1.py").is_file()


def test_macro_f1_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    references = rng.integers(0, 7, 300)
    predictions = np.where(rng.random(300) < 0.4, references, rng.integers(0, 7, 300))
    scores = load_metric("macro_f1").compute(predictions=predictions.tolist(), references=references.tolist())
    assert scores["macro_f1"] == pytest.approx(f1_score(references, predictions, average="macro"))
    assert scores["accuracy"] == pytest.approx(accuracy_score(references, predictions))
    assert scores["num_examples"] == 300


def test_macro_f1_counts_classes_nobody_predicted() -> None:
    # Class 2 exists in the task but neither list has it: with `labels` it counts as F1 = 0.
    metric = load_metric("macro_f1")
    assert metric.compute(predictions=[0, 1], references=[0, 1])["macro_f1"] == pytest.approx(1.0)
    assert metric.compute(predictions=[0, 1], references=[0, 1], labels=[0, 1, 2])[
        "macro_f1"
    ] == pytest.approx(2 / 3)


def test_retrieval_by_hand() -> None:
    metric = load_metric("retrieval")
    # Query 0: relevant ranked 1st. Query 1: relevant {0, 2} ranked 2nd and 3rd. Query 2: all tied, relevant 1.
    scores = metric.compute(
        predictions=[[0.9, 0.1, 0.3], [0.2, 0.8, 0.1], [0.5, 0.5, 0.5]], references=[[0], [0, 2], [1]]
    )
    assert scores["recall@1"] == pytest.approx(1 / 3)
    assert scores["recall@5"] == pytest.approx(1.0)
    assert scores["median_rank"] == 2.0
    # AP@10: 1, (1/2 + 2/3) / 2, and 1/3 (a tie ranks the relevant item last, so constant scores score badly).
    assert scores["map@10"] == pytest.approx((1 + (1 / 2 + 2 / 3) / 2 + 1 / 3) / 3)


def test_retrieval_perfect_and_reversed() -> None:
    metric = load_metric("retrieval")
    n = 12
    identity = np.eye(n).tolist()
    perfect = metric.compute(predictions=identity, references=[[i] for i in range(n)])
    assert (perfect["recall@1"], perfect["map@10"], perfect["median_rank"]) == (1.0, 1.0, 1.0)
    worst = metric.compute(predictions=(-np.eye(n)).tolist(), references=[[i] for i in range(n)])
    assert worst["median_rank"] == n and worst["recall@10"] == 0.0 and worst["map@10"] == 0.0


def test_retrieval_rejects_queries_without_relevant_items() -> None:
    with pytest.raises(ValueError, match="relevant"):
        load_metric("retrieval").compute(predictions=[[0.1, 0.2]], references=[[]])
