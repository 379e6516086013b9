"""What the project's `evaluate` metric modules share: their `MetricInfo`, their docstring and the thesis citation.

The modules load by path (`evaluate.load("music_clip_train/metrics/<name>.py")`); evaluate copies this sibling
beside each of them because they import it relatively (`from .thesis_metric import ...`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import datasets
import evaluate

THESIS = "@misc{musicclip_thesis, title={Multimodal Pretraining for Music Audio}, note={SECTION}}"


def thesis_metric(
    description: str, inputs_description: str, section: str, features: dict[str, Any], **info: Any
) -> Callable[[type[evaluate.Metric]], type[evaluate.Metric]]:
    """Class decorator for a metric defined in the thesis at `section`: its `_info` (`features` are the input
    columns; `info`: more `MetricInfo` fields) and its docstring from the two descriptions."""

    def metric_info(self: evaluate.Metric) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=description,
            citation=THESIS.replace("SECTION", section),
            inputs_description=inputs_description,
            features=datasets.Features(features),
            **info,
        )

    def decorate(cls: type[evaluate.Metric]) -> type[evaluate.Metric]:
        cls._info = metric_info
        return evaluate.utils.file_utils.add_start_docstrings(description, inputs_description)(cls)

    return decorate
