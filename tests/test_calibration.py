"""Temperature scaling, ECE and the reliability diagram; the temperature and OOD statistics inside the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_config
from scipy.special import softmax

from modeling_music_clip import MusicClipForAudioClassification
from music_clip_train.calibration import (
    ECE_BINS,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    merge_bins,
    reliability_bins,
    reliability_diagram,
)
from music_clip_train.ood_fit import OOD_PASS_RATE, fit_model_ood, fit_reference, score


def overconfident(n: int, true_temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose labels are drawn from softmax(logits / T): the model is T times too sharp."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, size=(n, 7))
    probs = softmax(logits / true_temperature, axis=1)
    labels = np.array([rng.choice(7, p=p) for p in probs])
    return logits, labels


def test_fitted_temperature_recovers_the_true_one_and_lowers_ece_on_new_data():
    val_logits, val_labels = overconfident(4000, 2.5, seed=0)
    temperature = fit_temperature(val_logits, val_labels)
    assert temperature == pytest.approx(2.5, rel=0.1)
    test_logits, test_labels = overconfident(4000, 2.5, seed=1)
    report = calibration_report(test_logits, test_labels, temperature)
    assert report["ece_after"] < 0.03 < 0.15 < report["ece_before"]
    assert report["nll_after"] < report["nll_before"]
    assert sum(report["bins_before"]["counts"]) == sum(report["bins_after"]["counts"]) == 4000


def test_ece_by_hand():
    # Confidences 0.9 (bin 13: (13/15, 14/15]) and 0.5 (bin 7): bin 13 holds 2 examples, one right (accuracy 0.5, gap 0.4);
    # bin 7 holds 2, both right (gap 0.5). ECE = 2/4 * 0.4 + 2/4 * 0.5 = 0.45.
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.5, 0.5], [0.5, 0.5]])
    labels = np.array([0, 1, 0, 0])
    bins = reliability_bins(probs, labels)
    assert len(bins["counts"]) == ECE_BINS == 15
    assert bins["counts"][13] == 2 and bins["counts"][7] == 2 and sum(bins["counts"]) == 4
    assert bins["accuracy"][13] == 0.5 and bins["confidence"][13] == pytest.approx(0.9)
    assert expected_calibration_error(bins) == pytest.approx(0.45)
    assert merge_bins([bins, bins]) == {**bins, "counts": [2 * c for c in bins["counts"]]}


def test_reliability_diagram_is_a_picture(tmp_path):
    logits, labels = overconfident(500, 2.0, seed=2)
    report = calibration_report(logits, labels, 2.0)
    path = reliability_diagram(
        {"N = 48": {"before": report["bins_before"], "after": report["bins_after"]}},
        tmp_path / "reliability.png",
        "test",
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_classifier_logits_are_divided_by_the_configured_temperature():
    torch.manual_seed(0)
    model = MusicClipForAudioClassification(tiny_config(num_labels=3)).eval()
    features = torch.randn(2, 1, 64, model.config.window_frames)
    with torch.no_grad():
        raw = model(input_features=features).logits
        model.config.calibration_temperature = 4.0
        out = model(input_features=features)
    assert torch.allclose(out.logits, raw / 4.0)
    assert torch.allclose(out.probabilities, (raw / 4.0).softmax(-1))
    assert out.ood_score is None  # no statistics fitted yet
    with pytest.raises(ValueError, match="calibration_temperature must be > 0"):
        tiny_config(calibration_temperature=0.0)


def test_ood_threshold_lets_95_percent_of_validation_pass_and_flags_far_clips():
    rng = np.random.default_rng(0)
    centre = rng.normal(size=64)
    reference = centre + 0.3 * rng.normal(size=(300, 64))
    validation = centre + 0.3 * rng.normal(size=(200, 64))
    stats, threshold = fit_reference(reference.astype(np.float32), validation.astype(np.float32))
    passed = score(stats, validation.astype(np.float32)) <= threshold
    assert passed.mean() >= OOD_PASS_RATE and passed.mean() < 0.97
    far = (-centre + 0.3 * rng.normal(size=(50, 64))).astype(np.float32)
    assert (score(stats, far) > threshold).all()


def test_model_scores_clips_with_its_installed_statistics():
    torch.manual_seed(0)
    model = MusicClipForAudioClassification(tiny_config(num_labels=3)).eval()
    frames = model.config.window_frames
    reference = torch.rand(40, 1, 64, frames)
    with torch.no_grad():
        v = model.get_audio_v(reference).numpy()
        summary = fit_model_ood(model, v[:30], v[30:])
        inputs = torch.cat([reference[:2], 5 + 5 * torch.rand(1, 1, 64, frames)])
        out = model(input_features=inputs)
    assert model.config.ood_threshold == summary["threshold"]
    assert torch.allclose(out.ood_score, model.ood_score(inputs))
    assert model.is_out_of_distribution(out.ood_score).tolist() == [False, False, True]
