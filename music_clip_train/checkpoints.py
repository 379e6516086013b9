"""Accelerate checkpoints that survive `kill -9`: written to a temporary folder, then renamed into place.

A run saves `save_state` every interval under `<output>/checkpoints/step-NNNNNNN`; `--resume` loads the newest
complete one, so a killed run loses at most one interval. The training progress (epoch, step, history) is a
registered checkpointable object, so it travels with the model, optimizer and RNG states.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from accelerate import Accelerator

from .errors import InputError
from .launch import NOT_RESULT_ARGS, knob_defaults
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
    """A finished run's results when it was made with the same arguments: `--resume` then has nothing to do.
    A knob missing from the recorded arguments (the run predates it) counts as its default."""
    result = read_json_marker(results_file, ("args",))  # a 0-byte or cut file (a kill) is "not finished"
    if result is None:
        return None
    recorded = {k: v for k, v in result.get("args", {}).items() if k not in NOT_RESULT_ARGS}
    defaults = knob_defaults()
    current = {
        k: v
        for k, v in args.items()
        if k not in NOT_RESULT_ARGS and (k in recorded or k not in defaults or v != defaults[k])
    }
    return result if recorded == current else None


def checkpoint_dirs(output: Path) -> list[Path]:
    root = Path(output) / "checkpoints"
    return sorted(p for p in root.glob("step-*") if p.is_dir()) if root.is_dir() else []


def save_checkpoint(accelerator: Accelerator, output: Path, step: int, keep: int | None = 2) -> None:
    """`save_state` into a temporary folder renamed into place; the newest `keep` are kept (None or 0: all).

    (Accelerate's own `ProjectConfiguration(total_limit=...)` rotates only its automatically named folders,
    written in place: a kill mid-save would leave a cut checkpoint as the newest.)"""
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
        for old in checkpoint_dirs(output)[:-keep] if keep else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def checkpoint_to_load(output: Path, resume: bool, path: str | None) -> Path | None:
    """`--resume_from_checkpoint PATH` (a checkpoint folder, or a run folder: its newest checkpoint), else with
    `--resume` the newest checkpoint under `output`, else None."""
    if path:
        newest = checkpoint_dirs(Path(path))
        if newest:
            return newest[-1]
        if not Path(path).is_dir() or (Path(path) / "checkpoints").is_dir():
            raise InputError(f"--resume_from_checkpoint {path}: no checkpoint folder there")
        return Path(path)
    return checkpoint_dirs(output)[-1] if resume and checkpoint_dirs(output) else None


def resume_from(accelerator: Accelerator, output: Path, resume: bool, path: str | None) -> Path | None:
    """Load the checkpoint `checkpoint_to_load` names; the folder loaded, or None."""
    chosen = checkpoint_to_load(output, resume, path)
    if chosen is not None:
        accelerator.load_state(str(chosen))
    return chosen
