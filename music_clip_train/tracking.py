"""Experiment tracking through Accelerate's trackers: loss, learning rate and throughput every `logging_steps`,
each epoch's record, and the run's arguments as hyperparameters."""

from __future__ import annotations

import time
from numbers import Number

import torch
from accelerate import Accelerator


def flat_numbers(record: dict, prefix: str) -> dict[str, float]:
    """The numbers of a (nested) epoch record as `prefix/a/b` scalars; anything else is left out."""
    out: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}/{key}"
        if isinstance(value, dict):
            out.update(flat_numbers(value, name))
        elif isinstance(value, Number) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def hyperparameters(args: dict) -> dict:
    """TensorBoard's hparams take scalars and strings only."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in args.items()}


class StepLogger:
    """Averages over the last `every` steps, reduced over processes (every process calls `step` alike)."""

    def __init__(self, accelerator: Accelerator, every: int, project: str, config: dict) -> None:
        self.accelerator, self.every = accelerator, every
        self.enabled = bool(accelerator.log_with)
        if self.enabled:
            accelerator.init_trackers(project, config=hyperparameters(config))
        self._reset()

    def _reset(self) -> None:
        self.losses: list[float] = []
        self.rows = 0
        self.started = time.perf_counter()

    def step(self, step: int, loss: float, rows: int, learning_rates: list[float]) -> None:
        if not self.enabled:
            return
        self.losses.append(loss)
        self.rows += rows
        if step % self.every:
            return
        device = self.accelerator.device
        local = torch.tensor([sum(self.losses) / len(self.losses), float(self.rows)], device=device)
        loss_mean = self.accelerator.reduce(local[:1], "mean").item()
        rows_total = self.accelerator.reduce(local[1:], "sum").item()
        values = {
            "train/loss": loss_mean,
            "train/samples_per_second": rows_total / max(time.perf_counter() - self.started, 1e-9),
        }
        for group, rate in enumerate(learning_rates):
            values["train/learning_rate" + (f"_group{group}" if group else "")] = rate
        self.accelerator.log(values, step=step)
        self._reset()

    def epoch(self, step: int, record: dict) -> None:
        if self.enabled:
            self.accelerator.log(flat_numbers(record, "eval"), step=step)
            self._reset()  # evaluation time is no training throughput

    def end(self) -> None:
        if self.enabled:
            self.accelerator.end_training()
