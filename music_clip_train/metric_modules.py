"""The project's `evaluate` metric modules, loaded by path from the `metrics/` folder inside this package
(never from the cwd, never from the Hub: the hub copies cannot be fetched offline)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import evaluate

METRICS_DIR = Path(__file__).resolve().parent / "metrics"  # shipped as package data


@cache
def load_metric(name: str) -> evaluate.EvaluationModule:
    path = METRICS_DIR / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(
            f"metric module {name!r} not found at {path} (is the project checkout complete?)"
        )
    return evaluate.load(str(path))


def classification_scores(predictions, references, num_labels: int) -> dict:
    return load_metric("macro_f1").compute(
        predictions=list(map(int, predictions)),
        references=list(map(int, references)),
        labels=list(range(num_labels)),
    )


def retrieval_scores(scores, relevant: list[list[int]]) -> dict:
    return load_metric("retrieval").compute(
        predictions=[list(map(float, row)) for row in scores], references=relevant
    )
