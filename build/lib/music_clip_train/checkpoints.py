"""Accelerate checkpoints that survive `kill -9`: written to a temporary folder, then renamed into place.

A run saves `save_state` every interval under `<output>/checkpoints/step-NNNNNNN`; `--resume` loads the newest
complete one, so a killed run loses at most one interval. The training progress (epoch, step, history) is a
registered checkpointable object, so it travels with the model, optimizer and RNG states.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from accelerate import Accelerator

from .markers import read_json_marker


class Progress:
    """Where training stands; saved and restored by `save_state` / `load_state`."""

    def __init__(self) -> None:
        self.step = 0
        self.history: list[dict] = []
        self.epoch_losses: list[
            float
        ] = []  # this epoch's batch losses so far (a mid-epoch resume keeps them)

    def state_dict(self) -> dict:
        return {"step": self.step, "history": self.history, "epoch_losses": self.epoch_losses}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.epoch_losses = list(state.get("epoch_losses", []))


def finished_result(results_file: Path, args: dict) -> dict | None:
    """A finished run's results when it was made with the same arguments: `--resume` then has nothing to do."""
    result = read_json_marker(results_file, ("args",))  # a 0-byte or cut file (a kill) is "not finished"
    if result is None:
        return None
    ignore = {"resume", "push_to_hub", "show_progress"}
    same = {k: v for k, v in result.get("args", {}).items() if k not in ignore} == {
        k: v for k, v in args.items() if k not in ignore
    }
    return result if same else None


def checkpoint_dirs(output: Path) -> list[Path]:
    root = Path(output) / "checkpoints"
    return sorted(p for p in root.glob("step-*") if p.is_dir()) if root.is_dir() else []


def save_checkpoint(accelerator: Accelerator, output: Path, step: int, keep: int = 2) -> None:
    root = Path(output) / "checkpoints"
    final, partial = root / f"step-{step:07d}", root / f".partial-step-{step:07d}"
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)  # atomic: a kill before this line leaves the previous checkpoint as the newest
        for old in checkpoint_dirs(output)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def resume_latest(accelerator: Accelerator, output: Path) -> Path | None:
    dirs = checkpoint_dirs(output)
    if not dirs:
        return None
    accelerator.load_state(str(dirs[-1]))
    return dirs[-1]
