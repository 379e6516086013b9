"""The linear-probe protocol of `train.py sweep --protocol probe`: the audio tower frozen, a logistic regression
(scikit-learn) on each clip's tanh(v) embedding, the input the finetuned classifier's head sees.

This is how frozen music encoders are usually compared on small labelled sets (CLAP, MERT and the MARBLE
benchmark probe frozen features): with a few dozen clips, finetuning a whole tower mostly measures how the
schedule copes with too little data, while a probe measures what the features already separate. The cells use
the finetuning cells' nested subsets (all N clips fit the probe: nothing is selected on a validation part) and
their fixed test split, and write the same `results.json`, so the sweep's report and the result pages read both.
The baseline row (`none`) probes a random tower, seeded by the cell's seed.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .data import GenreData, dataset_feature_config
from .finetune import FinetuneArgs, select_subset
from .markers import write_json_atomic
from .metric_modules import classification_scores
from .models import load_classifier_init, mel_statistics, resolve_window_samples
from .ood_fit import audio_v

# The sweep's protocols and the title its report gives each.
PROTOCOLS = {"finetune": "thesis Table 6 protocol", "probe": "linear probe on the frozen audio towers"}
# scikit-learn's default L2 strength on standardised features: fixed, never tuned on a test split.
PROBE_C = 1.0


def clip_embeddings(model, feature_extractor, mels: list[np.ndarray]) -> np.ndarray:
    """(clips, hidden) tanh(v) embeddings, each clip's windows mean-pooled (the classifier head's input)."""
    return torch.tanh(torch.from_numpy(audio_v(model, mels, feature_extractor))).numpy()


def fit_and_predict(train: np.ndarray, labels: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
    """The probe's test predictions; N clips of one class (a tiny N) can only name that class."""
    if len(np.unique(labels)) == 1:
        return np.full(len(test), labels[0])
    probe = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=PROBE_C, class_weight="balanced", max_iter=5000, random_state=seed),
    )
    return probe.fit(train, labels).predict(test)


class ProbeCells:
    """Runs probe cells on one dataset in memory; a pretrained tower's embeddings are computed once per init."""

    def __init__(self, genres: GenreData) -> None:
        self.genres = genres
        self._cache: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}

    def _embeddings(
        self, cell: FinetuneArgs, fit_mels: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Train-split and test-split embeddings and the tower's window (random tower: seeded, per cell)."""
        if cell.init in self._cache:
            return self._cache[cell.init]
        torch.manual_seed(cell.seed)
        window = resolve_window_samples(cell.window_samples, dataset_feature_config(cell.dataset))
        model, fe = load_classifier_init(cell.init, self.genres.id2label, window, mel_statistics(fit_mels))
        embedded = (
            clip_embeddings(model, fe, self.genres.train.mels),
            clip_embeddings(model, fe, self.genres.test.mels),
            model.config.window_samples,
        )
        if cell.init != "none":
            self._cache[cell.init] = embedded
        return embedded

    def run(self, cell: FinetuneArgs) -> dict:
        started = time.time()
        genres = self.genres
        chosen = select_subset(genres, cell.n, cell.seed, cell.val_fraction, cell.cap_n, cell.n_unit)
        subset = np.concatenate([chosen["fit"], chosen["val"]])
        train, test, window = self._embeddings(cell, [genres.train.mels[i] for i in subset])
        predictions = fit_and_predict(train[subset], genres.train.labels[subset], test, cell.seed)
        plan = chosen["plan"]
        result = {
            "dataset": cell.dataset,
            "init": cell.init,
            "protocol": "probe",
            "probe_c": PROBE_C,
            "seed": cell.seed,
            "n_requested": plan.requested,
            "n_used": plan.used,
            "capped": plan.capped,
            "n_unit": cell.n_unit,
            "n_tracks": chosen["n_tracks"],
            "n_clips": chosen["n_clips"],
            "n_fit": len(subset),
            "test": classification_scores(predictions, genres.test.labels, len(genres.label_names)),
            "labels": genres.label_names,
            "window_samples": window,
            "objective": cell.objective,
            "wall_seconds": round(time.time() - started, 1),
        }
        Path(cell.output).mkdir(parents=True, exist_ok=True)
        write_json_atomic(Path(cell.output) / "results.json", result)  # written last: the cell's done marker
        return result
