"""`train.py evaluate --ood-audio-dir DIR`: how well a model's OOD flag separates its own corpus from other audio.

Reports the flag rate on the in-domain genres test split and on every audio file under DIR, the AUROC between
the two score sets, and a near-out-of-distribution case: for each style, statistics refitted on the genres
training split without that style (threshold from a grouped validation part of the rest), and the flag rate on
that style's test clips (beside the rate on the other styles' test clips).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from audio_music_clip import AudioRejected
from music_clip_common.audio_files import audio_files

from .data import GenreData
from .errors import InputError
from .ood_fit import audio_v, fit_reference, score
from .subsets import carve_validation


def folder_mels(folder: str | Path, feature_extractor) -> tuple[list[np.ndarray], list[str], list[dict]]:
    """Log-mels of the audio files under `folder` (recursively) through the feature extractor, as the model
    hears any clip; files it rejects (too short, silent, unreadable) are skipped with its reason."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"--ood-audio-dir {folder!r} is not a folder")
    mels, names, skipped = [], [], []
    for path in audio_files(root, []):  # other files (covers, READMEs) are not clips: not counted as skipped
        try:
            mels.append(feature_extractor.log_mel(feature_extractor.prepare_waveform(str(path))))
            names.append(str(path.relative_to(root)))
        except AudioRejected as err:
            skipped.append({"path": str(path.relative_to(root)), "reason": str(err)})
    if not mels:
        raise InputError(
            f"--ood-audio-dir {folder!r} holds no decodable audio files ({len(skipped)} skipped)"
        )
    return mels, names, skipped


def near_ood(
    train_v: np.ndarray, data: GenreData, test_v: np.ndarray, val_fraction: float, seed: int
) -> dict:
    """Per style: statistics without it, flag rate on its test clips and on the other styles' test clips."""
    labels = data.train.labels
    groups = np.asarray(data.train.group_ids)
    per_style = {}
    for label, name in enumerate(data.label_names):
        keep = np.flatnonzero(labels != label)
        fit, val = carve_validation(labels[keep], groups[keep].tolist(), val_fraction, seed)
        stats, threshold = fit_reference(train_v[keep[fit]], train_v[keep[val]])
        flagged = score(stats, test_v) > threshold
        left_out = data.test.labels == label
        per_style[name] = {
            "left_out_flag_rate": float(flagged[left_out].mean()),
            "other_styles_flag_rate": float(flagged[~left_out].mean()),
        }
    rates = [s["left_out_flag_rate"] for s in per_style.values()]
    return {"mean_left_out_flag_rate": float(np.mean(rates)), "per_style": per_style}


def ood_evaluation(
    model, feature_extractor, data: GenreData, audio_dir: str, val_fraction: float = 0.2, seed: int = 0
) -> dict:
    if not model.has_ood_statistics:
        raise InputError(
            "this model has no OOD statistics (config.ood_threshold is None): train it with this version"
        )
    threshold = model.config.ood_threshold
    test_v = audio_v(model, data.test.mels, feature_extractor)
    test_scores = score(model.ood, test_v)
    mels, names, skipped = folder_mels(audio_dir, feature_extractor)
    dir_scores = score(model.ood, audio_v(model, mels, feature_extractor))
    auroc = roc_auc_score(
        np.r_[np.zeros(len(test_scores)), np.ones(len(dir_scores))], np.r_[test_scores, dir_scores]
    )
    train_v = audio_v(model, data.train.mels, feature_extractor)
    return {
        "threshold": threshold,
        "in_domain_test": {
            "clips": len(test_scores),
            "flag_rate": float((test_scores > threshold).mean()),
        },
        "audio_dir": {
            "path": str(audio_dir),
            "clips": len(dir_scores),
            "skipped": skipped,
            "flag_rate": float((dir_scores > threshold).mean()),
            "scores": {name: float(s) for name, s in zip(names, dir_scores)},
        },
        "auroc": float(auroc),
        "near_ood": near_ood(train_v, data, test_v, val_fraction, seed),
    }
