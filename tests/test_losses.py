"""Each objective against a value worked out by hand on a tiny batch (unit vectors, logit scale 1)."""

import math

import pytest
import torch
from torch import nn

from losses_music_clip import (
    IndependentPairsLoss,
    MatchingLoss,
    NTXentLoss,
    StochasticTripletLoss,
    SupConLoss,
)

E = math.e
A2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # two tracks, orthogonal
IDX2 = torch.tensor([0, 1])


def test_ntxent_two_pairs():
    # logits [[1, 0], [0, 1]]: each row's loss is -log(e / (e + 1)), both directions alike.
    expected = -math.log(E / (E + 1))
    assert NTXentLoss()(A2, A2, IDX2, 1.0).item() == pytest.approx(expected, rel=1e-6)
    assert NTXentLoss(symmetric=False)(A2, A2, IDX2, 1.0).item() == pytest.approx(expected, rel=1e-6)


def test_independent_pairs_mask_same_track():
    # Track 0 has two sentences t0=[1,0], t1=[0,1]; track 1 has t2=[0,1]. Pairs: (a0,t0), (a0,t1), (a1,t2).
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    idx = torch.tensor([0, 0, 1])
    # audio→text rows (same-track other pairs masked):
    #  pair 0: a0·t0=1 vs a0·t2=0 (t1 masked)          → -log(e/(e+1))
    #  pair 1: a0·t1=0 vs a0·t2=0 (t0 masked)          → -log(1/2)
    #  pair 2: a1·t2=1 vs a1·t0=0, a1·t1=1             → -log(e/(1+2e))
    a2t = (-math.log(E / (E + 1)) - math.log(0.5) - math.log(E / (1 + 2 * E))) / 3
    # text→audio columns: pair 0: t0·a0=1 vs t0·a1=0 → -log(e/(e+1)); pair 1: t1·a0=0 vs t1·a1=1 → -log(1/(1+e));
    # pair 2: t2·a1=1 vs t2·a0 = 0 twice (pairs 0 and 1 are another track: both stay) → -log(e/(e+2))
    t2a = (-math.log(E / (E + 1)) - math.log(1 / (1 + E)) - math.log(E / (E + 2))) / 3
    got = IndependentPairsLoss()(A2, text, idx, 1.0).item()
    assert got == pytest.approx((a2t + t2a) / 2, rel=1e-6)
    assert IndependentPairsLoss(symmetric=False)(A2, text, idx, 1.0).item() == pytest.approx(a2t, rel=1e-6)


def test_supcon_averages_positives():
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    idx = torch.tensor([0, 0, 1])
    # a0 row logits [1, 0, 0]: positives t0, t1 → mean(-log(e/(e+2)), -log(1/(e+2)))
    # a1 row logits [0, 1, 1]: positive t2 → -log(e/(1+2e))
    a2t = ((-math.log(E / (E + 2)) - math.log(1 / (E + 2))) / 2 - math.log(E / (1 + 2 * E))) / 2
    # text→audio: t0 [1,0]→a0: -log(e/(e+1)); t1 [0,1]→a0: -log(1/(1+e)); t2 [0,1]→a1: -log(e/(1+e))
    t2a = (-2 * math.log(E / (E + 1)) - math.log(1 / (1 + E))) / 3
    assert SupConLoss(symmetric=False)(A2, text, idx, 1.0).item() == pytest.approx(a2t, rel=1e-6)
    assert SupConLoss()(A2, text, idx, 1.0).item() == pytest.approx((a2t + t2a) / 2, rel=1e-6)


def test_triplet_hinge():
    # One text per track, so positive and negative are forced. Texts swapped: d(a, pos)=1, d(a, neg)=0.
    swapped = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert StochasticTripletLoss(margin=0.2)(A2, swapped, IDX2).item() == pytest.approx(1.2)
    assert StochasticTripletLoss(margin=0.2)(A2, A2, IDX2).item() == pytest.approx(0.0)
    # squared L2 on unit vectors: ||a-p||^2 = 2, ||a-n||^2 = 0 → 2 + 0.2
    assert StochasticTripletLoss(0.2, "squared_l2")(A2, swapped, IDX2).item() == pytest.approx(2.2)


def test_matching_bce_with_constant_head():
    head = nn.Linear(4, 1)
    nn.init.zeros_(head.weight)
    nn.init.constant_(head.bias, 1.5)
    # every logit is 1.5; half the labels 1, half 0: mean of softplus(-1.5) and softplus(1.5)
    expected = (math.log1p(math.exp(-1.5)) + math.log1p(math.exp(1.5))) / 2
    assert MatchingLoss(head)(A2, A2, IDX2).item() == pytest.approx(expected, rel=1e-6)


def test_triplet_and_matching_never_pick_own_track_as_negative():
    torch.manual_seed(0)
    audio, text = torch.randn(3, 8), torch.randn(9, 8)
    idx = torch.arange(3).repeat_interleave(3)
    own = idx[None, :] == torch.arange(3)[:, None]
    from losses_music_clip import _sample_columns

    for _ in range(50):
        assert not own[torch.arange(3), _sample_columns(~own, None)].any()
        assert own[torch.arange(3), _sample_columns(own, None)].all()
    assert StochasticTripletLoss()(audio, text, idx).item() >= 0


@pytest.mark.parametrize("loss", [NTXentLoss(), SupConLoss(), StochasticTripletLoss()])
def test_pairing_errors_are_clear(loss):
    with pytest.raises(ValueError, match="text_audio_index"):
        loss(A2, A2, torch.tensor([0, 1, 1]), 1.0)
    with pytest.raises(ValueError, match="point into"):
        loss(A2, A2, torch.tensor([0, 5]), 1.0)


# Group-aware negatives: rows 0 and 1 belong to one group (two clips of one track, say); row 2 to another.
GROUPS = torch.tensor([5, 5, 9])
GROUP_LOSSES = {
    "ntxent": NTXentLoss(),
    "independent": IndependentPairsLoss(),
    "supcon": SupConLoss(),
    "triplet": StochasticTripletLoss(margin=5.0),  # a margin above any distance gap: every hinge active
    "matching": MatchingLoss(nn.Linear(16, 1)),
}


def _random_batch(rows: int, texts_per_row: int, seed: int):
    torch.manual_seed(seed)
    audio, text = torch.randn(rows, 8), torch.randn(rows * texts_per_row, 8)
    return audio, text, torch.arange(rows).repeat_interleave(texts_per_row)


def _grad_of_row0(loss, audio, text, idx, groups, seed):
    audio = audio.clone().requires_grad_(True)
    value = loss(audio, text, idx, 1.0, audio_group=groups, generator=torch.Generator().manual_seed(seed))
    value.backward()
    return audio.grad[0]


@pytest.mark.parametrize("objective", list(GROUP_LOSSES))
def test_rows_of_one_group_are_not_negatives(objective):
    # Row 0's gradient must not depend on the texts of row 1 (same group): they are neither its positives nor
    # its negatives. Moving row 1's texts changes row 0's gradient whenever they act as negatives (they did when
    # only same-row texts were masked), under any of the seeds STL/SMM sample with.
    loss = GROUP_LOSSES[objective]
    audio, text, idx = _random_batch(3, 2, seed=0)
    moved = text.clone()
    moved[idx == 1] = torch.randn(2, 8)
    for seed in range(8 if objective in ("triplet", "matching") else 1):
        before = _grad_of_row0(loss, audio, text, idx, GROUPS, seed)
        after = _grad_of_row0(loss, audio, moved, idx, GROUPS, seed)
        assert before.abs().sum() > 0
        torch.testing.assert_close(after, before, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("objective", list(GROUP_LOSSES))
def test_distinct_groups_are_todays_row_masking(objective):
    # One group per row (or no groups) is the old behaviour bit for bit, with the same draws.
    loss = GROUP_LOSSES[objective]
    audio, text, idx = _random_batch(4, 3, seed=1)
    none = loss(audio, text, idx, 2.0, generator=torch.Generator().manual_seed(3))
    distinct = loss(audio, text, idx, 2.0, torch.tensor([7, 1, 3, 2]), torch.Generator().manual_seed(3))
    assert torch.equal(none, distinct)
    grouped = loss(audio, text, idx, 2.0, torch.tensor([7, 7, 3, 2]), torch.Generator().manual_seed(3))
    assert not torch.equal(none, grouped)


def test_ntxent_groups_by_hand():
    # Pairs (a0,t0), (a1,t1), (a2,t2); a0/a1 one group. a=t=e0, e1, e0+e1 normalised; logit scale 1.
    r = 1 / math.sqrt(2)
    vectors = torch.tensor([[1.0, 0.0], [0.0, 1.0], [r, r]])
    idx = torch.arange(3)
    # audio→text: row 0 sees t0 (1) and t2 (r), t1 masked; row 1 likewise t1 (1), t2 (r);
    # row 2 sees every text: t2 (1) vs t0 (r), t1 (r). Both directions alike (the logits are symmetric).
    row01 = -math.log(E / (E + math.exp(r)))
    row2 = -math.log(E / (E + 2 * math.exp(r)))
    expected = (2 * row01 + row2) / 3
    got = NTXentLoss()(vectors, vectors, idx, 1.0, audio_group=torch.tensor([0, 0, 1]))
    assert got.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("objective", ["triplet", "matching"])
def test_a_batch_of_one_group_is_a_zero_loss_marked_skipped(objective):
    from losses_music_clip import is_skipped_batch

    audio, text = torch.randn(3, 8, requires_grad=True), torch.randn(3, 8)
    loss = GROUP_LOSSES[objective](audio, text, torch.arange(3), 1.0, torch.zeros(3).long())
    assert loss.item() == 0.0 and is_skipped_batch(loss)
    loss.backward()  # defined, and no row moves
    assert torch.count_nonzero(audio.grad) == 0
    # Rows with a negative are scored as before; a two-group batch is never marked skipped.
    two = GROUP_LOSSES[objective](audio, text, torch.arange(3), 1.0, torch.tensor([0, 0, 1]))
    assert not is_skipped_batch(two) and two.item() > 0


def test_group_ids_must_fit_the_rows():
    with pytest.raises(ValueError, match="one integer group id per audio row"):
        NTXentLoss()(A2, A2, IDX2, 1.0, audio_group=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="one integer group id per audio row"):
        NTXentLoss()(A2, A2, IDX2, 1.0, audio_group=torch.tensor([0.0, 1.0]))


def test_audio_contrast_by_hand_and_added_to_the_objective():
    from configuration_music_clip import MusicClipConfig
    from losses_music_clip import build_loss

    # Rows 0-2 are one track, row 3 another. Temperature 0.5, so cosine 1 is logit 2.
    # Row 0 (and 1): logits 2 (row 1), 0 (row 2), 0 (row 3); positives rows 1, 2: mean -log p = log(e² + 2) - 1.
    # Row 2: logits 0, 0 (rows 0, 1), 2 (row 3); positives rows 0, 1: log(e² + 2). Row 3: no positive, no anchor.
    audio = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    text, idx, groups = audio.clone(), torch.arange(4), torch.tensor([0, 0, 0, 1])
    term = math.log(E**2 + 2) - 2 / 3
    bare = build_loss(MusicClipConfig(objective="ntxent"))(audio, text, idx, 1.0, groups)
    weighted = MusicClipConfig(objective="ntxent", audio_contrast_weight=0.5, audio_contrast_temperature=0.5)
    with_term = build_loss(weighted)(audio, text, idx, 1.0, groups)
    assert bare.item() == pytest.approx(NTXentLoss()(audio, text, idx, 1.0, groups).item(), rel=1e-6)
    assert with_term.item() == pytest.approx(bare.item() + 0.5 * term, rel=1e-6)


def test_audio_contrast_needs_a_positive_and_a_negative_and_keeps_skipped_batches_skipped():
    from configuration_music_clip import MusicClipConfig
    from losses_music_clip import AudioGroupContrast, build_loss, global_batch, is_skipped_batch

    audio = torch.randn(3, 8, requires_grad=True)
    term = AudioGroupContrast(0.1)
    alone = term(global_batch(audio, torch.randn(3, 8), torch.arange(3)))  # every row its own group
    one_track = term(global_batch(audio, torch.randn(3, 8), torch.arange(3), torch.zeros(3).long()))
    assert alone.item() == 0.0 and one_track.item() == 0.0  # no positive; no negative
    (alone + one_track).backward()
    assert torch.count_nonzero(audio.grad) == 0
    config = MusicClipConfig(objective="triplet", audio_contrast_weight=1.0)
    one_group = build_loss(config)(audio, torch.randn(3, 8), torch.arange(3), 1.0, torch.zeros(3).long())
    assert is_skipped_batch(one_group) and one_group.item() == 0.0
