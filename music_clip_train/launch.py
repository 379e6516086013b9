"""How a training run uses its processes and devices, and the knobs every training command shares.

The flags keep the names of transformers' example scripts (`--lr_scheduler_type`, `--max_grad_norm`, ...); their
defaults keep the training the tables were made with: constant learning rate, no clipping, no workers.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration
from transformers import SchedulerType, get_scheduler

from .errors import InputError

HIDDEN = {"help": argparse.SUPPRESS}  # dataclass fields for tests and the sweep, not shown in --help
PRECISIONS = ["no", "fp16", "bf16"]
LOGGING_DIR = "logs"  # under --output: the trackers' files (TensorBoard events, ...)


@dataclass(kw_only=True)
class LoopKnobs:
    """What pretraining, finetuning and every sweep cell share (the sweep passes them on to its cells)."""

    mixed_precision: str | None = field(
        default=None,
        metadata={
            "choices": PRECISIONS,
            "help": "autocast precision; default: $ACCELERATE_MIXED_PRECISION (which `accelerate launch` sets from "
            "`accelerate config`), else no",
        },
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "batches per optimizer step (Accelerate gradient accumulation)"}
    )
    sync_batchnorm: bool | None = field(
        default=None,
        metadata={
            "nargs": "?",  # `--sync-batchnorm` alone means true, as for the other switches
            "const": True,
            "help": "BatchNorm statistics over the global batch (SyncBatchNorm). Default: on with several "
            "processes on CUDA; on CPU (where SyncBatchNorm cannot run) each process normalises over its own part "
            "of the batch and rank 0's running statistics are the ones evaluated and saved",
        },
    )
    lr_scheduler_type: str = field(
        default="constant",
        metadata={
            "choices": [s.value for s in SchedulerType if s.value != "reduce_lr_on_plateau"],
            "help": "learning-rate schedule (transformers.get_scheduler) over the run's optimizer steps",
        },
    )
    warmup_ratio: float = field(default=0.0, metadata={"help": "fraction of the steps spent warming up"})
    max_grad_norm: float = field(
        default=0.0, metadata={"help": "clip gradients to this norm (0: no clipping)"}
    )
    dataloader_num_workers: int = field(
        default=0, metadata={"help": "DataLoader worker processes (memory is pinned on CUDA)"}
    )
    report_to: list[str] = field(
        default_factory=lambda: ["none"],
        metadata={
            "help": "Accelerate trackers (tensorboard, trackio, ... as installed), 'all' or 'none'; "
            f"files under <output>/{LOGGING_DIR}"
        },
    )
    logging_steps: int = field(default=10, metadata={"help": "steps between tracker records"})
    save_total_limit: int | None = field(
        default=2, metadata={"help": "checkpoints kept under <output>/checkpoints (0 or None: all)"}
    )


@dataclass(kw_only=True)
class LaunchArgs(LoopKnobs):
    """The knobs plus what only a single run has."""

    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={
            "metavar": "PATH",
            "help": "continue from this checkpoint folder (or the newest under a run folder's checkpoints/)",
        },
    )


# Arguments that change how a run is watched or stored, never what it trains (`--resume` ignores them).
NOT_RESULT_ARGS = {
    "resume",
    "resume_from_checkpoint",
    "push_to_hub",
    "show_progress",
    "report_to",
    "logging_steps",
    "dataloader_num_workers",
    "save_total_limit",
}


def knob_defaults() -> dict:
    """Each knob's default: a finished run recorded before a knob existed trained with its default."""
    return {
        f.name: f.default_factory() if f.default_factory is not MISSING else f.default
        for f in fields(LaunchArgs)
    }


def resolve(args: LoopKnobs, accelerator: Accelerator) -> None:
    """Fill in what "default" meant for this launch, so results record (and `--resume` compares) the precision
    and BatchNorm mode the run really uses."""
    args.mixed_precision = accelerator.mixed_precision  # the flag, else ACCELERATE_MIXED_PRECISION, else "no"
    if args.sync_batchnorm is None:  # SyncBatchNorm runs on CUDA only
        args.sync_batchnorm = accelerator.device.type == "cuda" and accelerator.num_processes > 1


def knobs(args: LoopKnobs) -> dict:
    """The shared knobs of `args`, to pass on to a run (the sweep's cells and pretraining)."""
    return {f.name: getattr(args, f.name) for f in fields(LoopKnobs)}


def trackers(report_to: list[str]) -> list[str]:
    """Accelerate tracker names; a named tracker that is not installed is an error, not a silent no-op."""
    from accelerate.tracking import get_available_trackers

    names = [str(name).lower() for name in report_to]
    if not names or names == ["none"]:
        return []
    available = [str(t.value) if hasattr(t, "value") else str(t) for t in get_available_trackers()]
    if "all" in names:
        return available
    missing = [n for n in names if n not in available]
    if missing:
        raise InputError(
            f"--report_to {' '.join(missing)}: not installed here (available: {', '.join(available) or 'none'}; "
            "e.g. pip install tensorboard)"
        )
    return names


def validate_knobs(args: LoopKnobs) -> None:
    if args.gradient_accumulation_steps < 1 or args.logging_steps < 1 or args.dataloader_num_workers < 0:
        raise InputError("--gradient_accumulation_steps and --logging_steps must be >= 1, workers >= 0")
    if not 0 <= args.warmup_ratio < 1 or args.max_grad_norm < 0:
        raise InputError("--warmup_ratio must be in [0, 1) and --max_grad_norm >= 0")
    trackers(args.report_to)
    if getattr(args, "resume_from_checkpoint", None):
        from .checkpoints import checkpoint_to_load

        checkpoint_to_load(Path(args.output), False, args.resume_from_checkpoint)  # a bad path fails here


def new_accelerator(args: LoopKnobs, output: Path) -> Accelerator:
    names = trackers(args.report_to)
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,  # None: ACCELERATE_MIXED_PRECISION (accelerate launch), else "no"
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=names or None,
        project_config=ProjectConfiguration(project_dir=str(output), logging_dir=str(output / LOGGING_DIR)),
    )
    if args.sync_batchnorm and accelerator.device.type != "cuda":
        raise InputError("--sync-batchnorm needs GPUs (SyncBatchNorm does not run on CPU)")
    return accelerator


def new_scheduler(args: LoopKnobs, optimizer: torch.optim.Optimizer, batches: int):
    """transformers' schedule over the run's optimizer steps (batches / accumulation); default constant."""
    steps = math.ceil(batches / args.gradient_accumulation_steps)
    return get_scheduler(
        args.lr_scheduler_type,
        optimizer,
        num_warmup_steps=math.ceil(args.warmup_ratio * steps),
        num_training_steps=steps,
    )


def scheduler_is_stateful(args: LoopKnobs) -> bool:
    """A constant rate without warm-up has nothing to checkpoint (and checkpoints made before schedules existed
    hold no scheduler state, so they still resume)."""
    return args.lr_scheduler_type != "constant" or args.warmup_ratio > 0


def loader_options(args: LoopKnobs, device: torch.device) -> dict:
    """DataLoader workers and pinned memory (CUDA only: pinning helps host-to-GPU copies, nothing else)."""
    workers = args.dataloader_num_workers
    return {
        "num_workers": workers,
        "pin_memory": device.type == "cuda",
        "persistent_workers": workers > 0,
    }


def trainable(model: torch.nn.Module) -> frozenset[str]:
    return frozenset(name for name, p in model.named_parameters() if p.requires_grad)


def rewrap(accelerator: Accelerator, wrapped: torch.nn.Module) -> torch.nn.Module:
    """DDP records at wrapping time which parameters get gradients and waits for each of them every step; after a
    freeze or unfreeze (finetuning's unfreeze epoch) the model is prepared again, so no unused-parameter search
    is needed. The old wrapper leaves the accelerator's models: `save_state` saves each prepared model once."""
    module = accelerator.unwrap_model(wrapped, keep_fp32_wrapper=False)  # the autocast forward comes off too
    # Accelerate has no public "release one model"; it lists the module (or, in some setups, its wrapper).
    accelerator._models[:] = [m for m in accelerator._models if m is not wrapped and m is not module]
    return accelerator.prepare_model(module)


def launch_record(accelerator: Accelerator, args) -> dict:
    """What results and cards say about how the run was launched."""
    processes = accelerator.num_processes
    return {
        "num_processes": processes,
        "per_process_batch": args.batch_size,
        "global_batch": args.batch_size * processes * args.gradient_accumulation_steps,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "mixed_precision": accelerator.mixed_precision,
        "sync_batchnorm": args.sync_batchnorm,
        "distributed_type": str(accelerator.distributed_type.value),
        "device": accelerator.device.type,
        "lr_scheduler_type": args.lr_scheduler_type,
        "warmup_ratio": args.warmup_ratio,
        "max_grad_norm": args.max_grad_norm,
    }


def visible_gpus() -> list[str]:
    """The CUDA devices this process may use, as CUDA_VISIBLE_DEVICES names them (or their indices)."""
    if not torch.cuda.is_available():
        return []
    listed = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed or [str(i) for i in range(torch.cuda.device_count())]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
