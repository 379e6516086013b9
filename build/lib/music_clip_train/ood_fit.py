"""Fit a model's out-of-distribution reference statistics (see `ood_music_clip.py` for the score).

Mean and Ledoit-Wolf shrunk precision of the normalised tanh(v) embeddings of the training clips; the threshold is the
score that 95 % of held-out in-domain clips (the validation part, never the test split) stay at or below.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.covariance import LedoitWolf

from ood_music_clip import MusicClipOodStatistics, ood_features

OOD_PASS_RATE = 0.95  # share of in-domain validation clips that must pass (not be flagged)
OOD_METHOD = (
    "Mahalanobis distance of the clip's L2-normalised tanh(v) embedding (windows pooled) from the training clips' "
    "mean, with a Ledoit-Wolf shrunk covariance (scikit-learn)"
)


@torch.no_grad()
def audio_v(model, mels: list[np.ndarray], feature_extractor, batch_size: int = 32) -> np.ndarray:
    """v embeddings (N, D) of stored or fresh log-mels, for either model kind."""
    model.eval()
    device = next(model.parameters()).device
    chunks = []
    for start in range(0, len(mels), batch_size):
        inputs = feature_extractor.window(mels[start : start + batch_size])
        v = model.get_audio_v(inputs["input_features"].to(device), inputs["window_mask"].to(device))
        chunks.append(v.float().cpu().numpy())
    return np.concatenate(chunks)


def fit_statistics(reference_v: np.ndarray) -> MusicClipOodStatistics:
    """Statistics of reference embeddings (N, D), in the module the model scores with."""
    if len(reference_v) < 2:
        raise ValueError(f"OOD statistics need at least 2 reference clips, got {len(reference_v)}")
    features = ood_features(torch.from_numpy(reference_v)).double().numpy()
    estimate = LedoitWolf().fit(features)
    stats = MusicClipOodStatistics(reference_v.shape[1])
    stats.set_statistics(
        torch.from_numpy(estimate.location_).float(), torch.from_numpy(estimate.precision_).float()
    )
    return stats


@torch.no_grad()
def score(stats: MusicClipOodStatistics, v: np.ndarray) -> np.ndarray:
    return stats(torch.from_numpy(v).to(stats.mean.device)).cpu().numpy()


def pass_threshold(validation_scores: np.ndarray) -> float:
    """The smallest observed score that at least `OOD_PASS_RATE` of the validation clips stay at or below."""
    if len(validation_scores) == 0:
        raise ValueError("no validation clips to set the OOD threshold with")
    return float(np.quantile(validation_scores, OOD_PASS_RATE, method="higher"))


def fit_reference(reference_v: np.ndarray, validation_v: np.ndarray) -> tuple[MusicClipOodStatistics, float]:
    stats = fit_statistics(reference_v)
    return stats, pass_threshold(score(stats, validation_v))


def install(model, stats: MusicClipOodStatistics, threshold: float) -> None:
    """Copy fitted statistics into the model's buffers (saved in safetensors) and the threshold into its config."""
    model.ood.set_statistics(stats.mean.to(model.ood.mean.device), stats.precision.to(model.ood.mean.device))
    model.config.ood_threshold = threshold


def fit_model_ood(model, reference_v: np.ndarray, validation_v: np.ndarray) -> dict:
    """Fit, install, and describe (for the card and results) a model's OOD statistics."""
    stats, threshold = fit_reference(reference_v, validation_v)
    install(model, stats, threshold)
    return {
        "method": OOD_METHOD,
        "reference_clips": len(reference_v),
        "validation_clips": len(validation_v),
        "threshold": threshold,
        "pass_rate_target": OOD_PASS_RATE,
    }


def fit_classifier_ood(model, fit, val, test_v: np.ndarray, feature_extractor) -> dict:
    """The classifier's statistics from its fit part, threshold from its validation part; the test split's flag
    rate (expected near 1 − OOD_PASS_RATE when test clips are like the training clips)."""
    summary = fit_model_ood(
        model, audio_v(model, fit.mels, feature_extractor), audio_v(model, val.mels, feature_extractor)
    )
    flagged = score(model.ood, test_v) > summary["threshold"]
    return {**summary, "test_flag_rate": float(flagged.mean())}


def add_statistics_to_pretrained(folder: str, dataset: str) -> dict:
    """Fit OOD statistics into a pretrained folder saved before they existed, with the split its pretraining
    used (training clips = reference, held-out clips = validation). Rewrites config.json and model.safetensors."""
    import json
    from pathlib import Path

    from .data import load_captions
    from .models import load_pretrained
    from .subsets import holdout_split

    model, processor = load_pretrained(folder)
    fe = processor.feature_extractor
    trained = Path(folder) / "train_results.json"
    args = json.loads(trained.read_text())["args"] if trained.is_file() else {}
    data = load_captions(dataset, n_mels=fe.feature_size)
    train, held = holdout_split(data.group_ids, args.get("holdout", 0.1), args.get("seed", 0))
    summary = fit_model_ood(
        model,
        audio_v(model, data.subset(train).mels, fe),
        audio_v(model, data.subset(held).mels, fe),
    )
    model.save_pretrained(folder)
    return summary


if __name__ == "__main__":  # python -m music_clip_train.ood_fit MODEL_DIR DATASET
    import sys

    print(add_statistics_to_pretrained(sys.argv[1], sys.argv[2]))
