"""Pretraining's example budget: large caption sets get fewer epochs, small ones the epochs asked for."""

from music_clip_train.budgets import PRETRAIN_EXAMPLES, budgeted_epochs


def test_pretraining_epochs_shrink_to_the_example_budget() -> None:
    assert budgeted_epochs(10, 320, PRETRAIN_EXAMPLES["quick"]) == 10  # fits: as asked
    assert budgeted_epochs(10, 4_100, 6_000) == 2  # ceil: the budget is a floor of examples seen, not a cut
    assert budgeted_epochs(10, 50_000, 6_000) == 1  # never below one epoch
    assert budgeted_epochs(10, 50_000, None) == 10  # the thesis profile is uncapped
