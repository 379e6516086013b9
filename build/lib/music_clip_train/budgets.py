"""Training budgets shared by the sweep's profiles and the main job (a light module: no torch import)."""

from __future__ import annotations

# Training examples one pretraining run sees in the capped profiles; a run over a larger captions config gets fewer
# epochs (never below one). The captions config grew 7-13x in issue 16 (at least 3x the genres config): 10 epochs over it
# would cost the quick job ~7 extra minutes and the full profile ~2 extra hours. "cpu" keeps about what the
# README's Table 6 pretraining saw before (10 epochs over ~1,700 training captions of the full build), now over
# distinct clips instead of repeats; "quick" (about 2x its pretraining before, ~1 min) keeps the quick job within
# 20 minutes on 2 idle cores, where the larger build takes most of them.
PRETRAIN_EXAMPLES: dict[str, int | None] = {"full": None, "cpu": 20_000, "quick": 6_000}


def budgeted_epochs(epochs: int, n_train: int, max_examples: int | None) -> int:
    """Epochs under a budget of training examples seen: as asked when they fit, else ceil(budget / n_train)."""
    if not max_examples or n_train * epochs <= max_examples:
        return epochs
    return max(1, -(-max_examples // n_train))
