"""Temperature scaling of the genre classifier (Guo et al. 2017) and its measures: expected calibration error
(ECE, 15 equal-width confidence bins) and the reliability diagram.

The temperature is fitted on the finetuning run's validation part (never the test split) by minimising the
negative log-likelihood over log T; the test split is only scored, before (T = 1) and after.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.optimize import minimize_scalar  # noqa: E402
from scipy.special import log_softmax, softmax  # noqa: E402

ECE_BINS = 15
# Search range of the temperature: wide enough for any trained head (T far outside means a broken model).
TEMPERATURE_BOUNDS = (0.05, 50.0)


@torch.no_grad()
def classifier_outputs(model, mels: list[np.ndarray], feature_extractor, batch_size: int = 64):
    """Uncalibrated logits (N, C) and v embeddings (N, D) of clips, one pass through the model."""
    model.eval()
    device = next(model.parameters()).device
    logits, vs = [], []
    for start in range(0, len(mels), batch_size):
        inputs = feature_extractor.window(mels[start : start + batch_size])
        out = model(
            input_features=inputs["input_features"].to(device), window_mask=inputs["window_mask"].to(device)
        )
        logits.append((out.logits * model.config.calibration_temperature).float().cpu().numpy())
        vs.append(out.hidden_states[0].float().cpu().numpy())
    return np.concatenate(logits), np.concatenate(vs)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    log_probs = log_softmax(logits.astype(np.float64) / temperature, axis=1)
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 that minimises the NLL of softmax(logits / T) on these (validation) examples."""
    if len(logits) == 0:
        raise ValueError("no validation examples to fit a temperature on")
    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    best = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, math.exp(log_t)),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(math.exp(best.x))


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> dict:
    """Per equal-width confidence bin: example count, mean confidence and accuracy of the top class."""
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == labels
    # Bin b holds confidences in (b/n, (b+1)/n]; a confidence of exactly 0 cannot occur (>= 1/C).
    index = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=n_bins)
    acc_sum = np.bincount(index, weights=correct.astype(np.float64), minlength=n_bins)
    safe = np.maximum(counts, 1)
    return {
        "counts": counts.tolist(),
        "confidence": (conf_sum / safe).tolist(),
        "accuracy": (acc_sum / safe).tolist(),
    }


def expected_calibration_error(bins: dict) -> float:
    """Σ_b (n_b / N) · |accuracy_b − confidence_b| over the bins of `reliability_bins`."""
    counts = np.asarray(bins["counts"], dtype=np.float64)
    if counts.sum() == 0:
        raise ValueError("no examples in the bins")
    gap = np.abs(np.asarray(bins["accuracy"]) - np.asarray(bins["confidence"]))
    return float((counts * gap).sum() / counts.sum())


def merge_bins(many: list[dict]) -> dict:
    """Bins of several runs (same bin edges) as if their examples were scored together."""
    counts = np.sum([b["counts"] for b in many], axis=0).astype(np.float64)
    safe = np.maximum(counts, 1)
    conf = np.sum([np.asarray(b["confidence"]) * b["counts"] for b in many], axis=0) / safe
    acc = np.sum([np.asarray(b["accuracy"]) * b["counts"] for b in many], axis=0) / safe
    return {"counts": counts.astype(int).tolist(), "confidence": conf.tolist(), "accuracy": acc.tolist()}


def calibration_report(logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict:
    """ECE and reliability bins of the test split before (T = 1) and after temperature scaling."""
    before = reliability_bins(softmax(logits.astype(np.float64), axis=1), labels)
    after = reliability_bins(softmax(logits.astype(np.float64) / temperature, axis=1), labels)
    return {
        "temperature": temperature,
        "ece_bins": ECE_BINS,
        "ece_before": expected_calibration_error(before),
        "ece_after": expected_calibration_error(after),
        "nll_before": negative_log_likelihood(logits, labels),
        "nll_after": negative_log_likelihood(logits, labels, temperature),
        "bins_before": before,
        "bins_after": after,
    }


def _draw(ax, bins: dict, label: str, **style) -> None:
    counts = np.asarray(bins["counts"])
    used = counts > 0
    centres = (np.arange(len(counts)) + 0.5) / len(counts)
    ece = expected_calibration_error(bins)
    ax.plot(
        centres[used],
        np.asarray(bins["accuracy"])[used],
        marker="o",
        label=f"{label} (ECE {ece:.3f})",
        **style,
    )


def reliability_diagram(panels: dict[str, dict[str, dict]], path: Path, title: str) -> Path:
    """One panel per key (e.g. per N), each with accuracy against confidence for its curves (before/after)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.2), squeeze=False, sharey=True)
    for ax, (name, curves) in zip(axes[0], panels.items()):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
        for label, bins in curves.items():
            _draw(ax, bins, label)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel(f"confidence ({ECE_BINS} bins)")
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    axes[0][0].set_ylabel("accuracy")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def calibrate_classifier(model, val, test, feature_extractor) -> tuple[dict, np.ndarray, np.ndarray]:
    """Fit the temperature on `val` into `model.config`; score the test split once: (report, raw test logits,
    test v embeddings). Predictions (argmax) do not depend on the temperature."""
    model.config.calibration_temperature = 1.0
    val_logits, _ = classifier_outputs(model, val.mels, feature_extractor)
    temperature = fit_temperature(val_logits, val.labels)
    test_logits, test_v = classifier_outputs(model, test.mels, feature_extractor)
    model.config.calibration_temperature = temperature
    report = calibration_report(test_logits, test.labels, temperature)
    report["validation_clips"] = len(val)
    return report, test_logits, test_v
