"""Macro-F1 and accuracy for single-label classification (the thesis' downstream metric, ch. 4.4).

A local `evaluate` module: the hub copy of `f1` cannot be fetched offline, so the project ships its own and
loads it by path. Classes that never occur in predictions or references still count when `labels` is given,
so a model that ignores a class is penalised for it.
"""

from __future__ import annotations

import datasets
import evaluate
from sklearn.metrics import accuracy_score, f1_score

from .thesis_metric import thesis_metric

_DESCRIPTION = """Macro-averaged F1 (unweighted mean of per-class F1) and accuracy."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list[int]): predicted class ids.
    references (list[int]): true class ids.
    labels (list[int], optional): every class id of the task; classes absent from both lists then score 0.
Returns:
    macro_f1 (float), accuracy (float), num_examples (int).
Examples:
    >>> metric = evaluate.load("music_clip_train/metrics/macro_f1.py")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])["accuracy"]
    0.6666666666666666
"""


@thesis_metric(
    _DESCRIPTION,
    _KWARGS_DESCRIPTION,
    "chapter 4.4",
    {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")},
    reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"],
)
class MacroF1(evaluate.Metric):
    def _compute(self, predictions, references, labels=None) -> dict:
        if len(references) == 0:
            raise ValueError("macro_f1 needs at least one example")
        labels = sorted(set(labels)) if labels is not None else None
        macro = f1_score(references, predictions, labels=labels, average="macro", zero_division=0)
        return {
            "macro_f1": float(macro),
            "accuracy": float(accuracy_score(references, predictions)),
            "num_examples": len(references),
        }
