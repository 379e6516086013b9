"""Cross-modal retrieval metrics: recall@k, mAP@10 and median rank (text→music and music→text).

Each query gives its scores over the whole candidate list (higher = more similar) and the indices of the
candidates that are relevant to it (one track for a caption; a track's three sentences for a track). Ranks are
1-based and count from the first relevant hit; ties are broken against the query (a relevant item tied with an
irrelevant one ranks behind it), so a constant score cannot look good.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

from .thesis_metric import thesis_metric

_DESCRIPTION = """Recall@k, mean average precision at 10 and median rank of the first relevant candidate."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list[list[float]]): one row of candidate scores per query (all rows the same length).
    references (list[list[int]]): indices of the relevant candidates for each query (at least one).
    ks (list[int], optional): cut-offs for recall, default [1, 5, 10].
Returns:
    recall@k for each k, map@10, median_rank, mean_rank, num_queries, num_candidates.
Examples:
    >>> metric = evaluate.load("music_clip_train/metrics/retrieval.py")
    >>> metric.compute(predictions=[[0.9, 0.1], [0.2, 0.8]], references=[[0], [1]])["recall@1"]
    1.0
"""


def _ranks(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """1-based rank of every candidate, relevant ones placed after irrelevant ties (pessimistic)."""
    order = np.lexsort((relevant.astype(np.int8), -scores))  # sort by score desc, then irrelevant first
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[order] = np.arange(1, len(scores) + 1)
    return ranks


@thesis_metric(
    _DESCRIPTION,
    _KWARGS_DESCRIPTION,
    "section 5.1",
    {
        "predictions": datasets.Sequence(datasets.Value("float32")),
        "references": datasets.Sequence(datasets.Value("int64")),
    },
)
class Retrieval(evaluate.Metric):
    def _compute(self, predictions, references, ks=(1, 5, 10)) -> dict:
        if len(predictions) == 0:
            raise ValueError("retrieval needs at least one query")
        scores = np.asarray(predictions, dtype=np.float64)
        if scores.ndim != 2:
            raise ValueError("every query needs a score for every candidate (rows of equal length)")
        first_ranks, average_precisions = [], []
        for row, relevant_ids in zip(scores, references):
            relevant = np.zeros(len(row), dtype=bool)
            if len(relevant_ids) == 0:
                raise ValueError("every query needs at least one relevant candidate")
            relevant[np.asarray(relevant_ids, dtype=np.int64)] = True
            ranks = np.sort(_ranks(row, relevant)[relevant])
            first_ranks.append(ranks[0])
            hits = ranks[ranks <= 10]  # AP@10: precision at each relevant hit within the top 10
            precision = np.arange(1, len(hits) + 1) / hits
            average_precisions.append(precision.sum() / min(len(ranks), 10))
        first = np.asarray(first_ranks)
        result = {f"recall@{k}": float((first <= k).mean()) for k in ks}
        result.update(
            {
                "map@10": float(np.mean(average_precisions)),
                "median_rank": float(np.median(first)),
                "mean_rank": float(first.mean()),
                "num_queries": int(len(first)),
                "num_candidates": int(scores.shape[1]),
            }
        )
        return result
