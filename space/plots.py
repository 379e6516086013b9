"""Pictures for the UI: the clip's log-mel as the model sees it."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless server
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def mel_image(mel: np.ndarray, sampling_rate: int, hop_length: int) -> np.ndarray:
    """RGB image (H, W, 3) of a time-major log-mel `(T, n_mels)` with a seconds axis."""
    seconds = mel.shape[0] * hop_length / sampling_rate
    fig, ax = plt.subplots(figsize=(8, 2.6), dpi=100)
    try:
        im = ax.imshow(
            mel.T, origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, mel.shape[1])
        )
        ax.set_xlabel("time (s)")
        ax.set_ylabel("mel bin")
        ax.set_title("log(1 + mel power), as the model sees it", fontsize=10)
        fig.colorbar(im, ax=ax, pad=0.01)
        fig.tight_layout()
        fig.canvas.draw()
        return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    finally:
        plt.close(fig)
