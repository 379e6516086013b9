"""The GPU check's dry run: the same script the GPU machine runs, on CPU (bf16 autocast against fp32)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from test_train import REPO, write_dataset


@pytest.mark.slow  # four short training runs in fresh interpreters (~1.5 min on a busy 2-core machine)
def test_gpu_check_dry_run_trains_on_stored_mels_and_compares_losses(tmp_path) -> None:
    dataset = write_dataset(tmp_path / "ds", n_train=40)
    mels = tmp_path / "mels.npz"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    script = [sys.executable, str(REPO / "scripts" / "gpu_check.py")]
    write = subprocess.run(
        [*script, "--write-mels", str(dataset), str(mels), "--frames", "63"], env=env, timeout=300
    )
    assert write.returncode == 0 and np.load(mels)["mels"].shape == (40, 63, 64)
    check = subprocess.run(
        [str(REPO / "scripts" / "gpu_check.sh"), "--cpu-only", "--mels", str(mels), "--frames", "63"]
        + ["--epochs", "2", "--out", str(tmp_path / "runs")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    assert "GPU CHECK PASSED" in check.stdout and "cpu-bf16 finetune epoch 2" in check.stdout
    assert (tmp_path / "runs" / "cpu-bf16" / "finetune" / "results.json").is_file()
