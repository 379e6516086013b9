"""Training budgets (stated in `music_clip_common.experiment`) and how a budget of examples becomes epochs."""

from __future__ import annotations

from music_clip_common.experiment import BUDGETS

# Training examples one pretraining run sees under each budget (None: no cap).
PRETRAIN_EXAMPLES: dict[str, int | None] = {name: b["pretrain_examples"] for name, b in BUDGETS.items()}


def budgeted_epochs(epochs: int, n_train: int, max_examples: int | None) -> int:
    """Epochs under a budget of training examples seen: as asked when they fit, else ceil(budget / n_train)."""
    if not max_examples or n_train * epochs <= max_examples:
        return epochs
    return max(1, -(-max_examples // n_train))
