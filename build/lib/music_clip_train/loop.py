"""The one training loop under `train.py pretrain` and `train.py finetune`.

`run(spec)` owns the Accelerator, `prepare`, resume, the epoch loop with its evaluation hook, checkpoints and the
one publish step (model folder, card, results file, push). A `TrainingSpec` says only what differs: how to build
the model, data and optimizer, the loss of a batch, what an epoch's evaluation records, and what gets published.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .checkpoints import Progress, finished_result, resume_latest, save_checkpoint
from .collate import EpochBatchSampler
from .errors import InputError
from .markers import weights_loadable, write_json_atomic
from .models import save_folder

HIDDEN = {"help": argparse.SUPPRESS}  # dataclass fields for tests and the sweep, not shown in --help


@dataclass(kw_only=True)
class LaunchArgs:
    """How a run uses its processes and devices (shared by pretraining and finetuning)."""

    mixed_precision: str = field(
        default="no", metadata={"choices": ["no", "fp16", "bf16"], "help": "Accelerate mixed precision"}
    )
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "batches per optimizer step (Accelerate gradient accumulation)"}
    )
    sync_batchnorm: bool = field(
        default=False,
        metadata={
            "help": "GPU runs with several processes: BatchNorm statistics over the global batch (SyncBatchNorm). "
            "Without it (and always on CPU, where SyncBatchNorm cannot run) each process keeps its own statistics "
            "and rank 0's are the ones evaluated and saved"
        },
    )


@dataclass
class Parts:
    """What a spec builds for the loop (before `accelerator.prepare`)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loader: DataLoader
    sampler: EpochBatchSampler
    epochs: int


@dataclass
class Publication:
    """One finished run on disk: the model folder (optional), its card, and the results file written last."""

    folder: Path
    result: dict
    results_name: str
    model: Any = None  # None: the results file only (sweep cells)
    processor: Any = (
        None  # saved beside the model (a processor, or a feature extractor via `feature_extractor`)
    )
    feature_extractor: Any = None
    card: str | None = None
    push_to_hub: str | None = None


class TrainingSpec:
    """What one kind of training supplies; `run` does everything else."""

    results_name = "results.json"
    checkpoint_unit = "epoch"  # what --checkpoint-every counts: epochs, or optimizer "step"s
    show_progress = True

    def __init__(self, args) -> None:
        self.args = args
        self.accelerator: Accelerator | None = None

    @property
    def desc(self) -> str:
        return type(self).__name__

    def recorded_args(self) -> dict:
        """The arguments a result records (test-only `debug_*` fields left out)."""
        return {k: v for k, v in asdict(self.args).items() if not k.startswith("debug_")}

    def validate(self) -> None:
        """Raise `InputError` before anything is built."""

    def setup(self, accelerator: Accelerator) -> Parts:
        raise NotImplementedError

    def new_progress(self) -> Progress:
        return Progress()

    def start_epoch(self, model, epoch: int) -> None:
        """Before epoch `epoch` (0-based) trains: e.g. freeze or unfreeze parts."""

    def loss(self, model, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, model, progress: Progress, epoch: int, losses: list[float]) -> dict:
        """The evaluation hook: the history record of epoch `epoch` (1-based), model in eval mode."""
        raise NotImplementedError

    def after_epoch(self, model, progress: Progress, epoch: int) -> bool:
        """After the record is in the history (and before the checkpoint): True stops training early."""
        return False

    def result(self, model, progress: Progress) -> dict:
        raise NotImplementedError

    def before_publish(self, model, result: dict) -> None:
        """Last change before anything is written: mutate the model or its config, add keys to `result`."""

    def publication(self, model, result: dict) -> Publication:
        raise NotImplementedError

    def saved(self, folder: Path) -> bool:
        """Whether what `publication` writes besides the results file is whole (weights present and loadable)."""
        return weights_loadable(folder)


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # tests: a real kill -9 at a known point


def _checkpoint_tag(
    spec: TrainingSpec, progress: Progress, epoch_done: bool, steps_per_epoch: int
) -> int | None:
    """The step or epoch number to checkpoint under now, or None."""
    every = spec.args.checkpoint_every
    if not every:
        return None
    if spec.checkpoint_unit == "step":
        # An epoch's last step is saved after its evaluation, so a resume never loses the record.
        due = progress.step % every == 0 and (epoch_done or progress.step % steps_per_epoch)
        return progress.step if due else None
    epoch = progress.step // steps_per_epoch
    return epoch if epoch_done and epoch % every == 0 else None


def run(spec: TrainingSpec) -> dict:
    spec.validate()
    args = spec.args
    output = Path(args.output)
    done = finished_result(output / spec.results_name, spec.recorded_args())
    if args.resume and done and spec.saved(output):
        if PartialState().is_main_process:
            print(f"{output}: already finished with these arguments; nothing to resume")
        return done
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision, gradient_accumulation_steps=args.gradient_accumulation_steps
    )
    if args.sync_batchnorm and accelerator.device.type == "cpu":
        raise InputError("--sync-batchnorm needs GPUs (SyncBatchNorm does not run on CPU)")
    set_seed(args.seed)
    started = time.time()
    spec.accelerator = accelerator
    parts = spec.setup(accelerator)
    model = parts.model
    if args.sync_batchnorm:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # The loader is not prepared: its sampler already gives each process its part of the global batch.
    model, optimizer = accelerator.prepare(model, parts.optimizer)
    loader, sampler = parts.loader, parts.sampler
    progress = spec.new_progress()
    accelerator.register_for_checkpointing(progress)
    resumed_from = resume_latest(accelerator, output) if args.resume else None
    unwrapped = accelerator.unwrap_model(model)
    steps_per_epoch = len(loader)  # global batches: the same on every process
    total_steps = steps_per_epoch * parts.epochs
    bar = tqdm(
        total=total_steps,
        initial=progress.step,
        desc=spec.desc,
        disable=not (spec.show_progress and accelerator.is_local_main_process),
        leave=False,
    )
    step_seconds = 0.0
    kill_step = getattr(args, "debug_kill_after_step", None)
    kill_epoch = getattr(args, "debug_kill_after_epoch", None)
    while progress.step < total_steps:
        epoch, done_in_epoch = divmod(progress.step, steps_per_epoch)
        spec.start_epoch(unwrapped, epoch)
        sampler.set_epoch(epoch, start=done_in_epoch)  # a mid-epoch resume skips the batches it trained
        model.train()
        epoch_started = time.perf_counter()
        for batch in loader:
            with accelerator.accumulate(model):
                loss = spec.loss(model, to_device(batch, accelerator.device))
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            progress.step += 1
            progress.epoch_losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            tag = _checkpoint_tag(spec, progress, False, steps_per_epoch)
            if tag is not None:
                save_checkpoint(accelerator, output, tag)
            if kill_step == progress.step:
                _kill_self()
        step_seconds += time.perf_counter() - epoch_started  # checkpoints included, evaluation not
        unwrapped.eval()
        sync_buffers(accelerator, unwrapped)
        progress.history.append(spec.evaluate(unwrapped, progress, epoch + 1, progress.epoch_losses))
        progress.epoch_losses = []
        stop = spec.after_epoch(unwrapped, progress, epoch + 1)
        tag = _checkpoint_tag(spec, progress, True, steps_per_epoch)
        if tag is not None:
            save_checkpoint(accelerator, output, tag)
        if kill_epoch == epoch + 1:
            _kill_self()
        if stop:
            break
    bar.close()

    result = spec.result(unwrapped, progress)
    result.update(
        launch=launch_record(accelerator, args),
        resumed_from=str(resumed_from) if resumed_from else None,
        wall_seconds=round(time.time() - started, 1),
        step_seconds=round(step_seconds, 2),  # training steps of this invocation only
        args=spec.recorded_args(),
    )
    spec.before_publish(unwrapped, result)
    if accelerator.is_main_process:
        publish(spec.publication(unwrapped, result))
    accelerator.wait_for_everyone()
    return result


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


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
    }


def sync_buffers(accelerator: Accelerator, model: torch.nn.Module) -> None:
    """Rank 0's BatchNorm statistics on every process before evaluation (what DDP's next forward would do), so
    every process evaluates, and publishes, the same model."""
    if accelerator.num_processes > 1:
        for buffer in model.buffers():
            torch.distributed.broadcast(buffer.data, src=0)


def gather_rows(accelerator: Accelerator, compute, n: int) -> torch.Tensor:
    """`compute(start, stop)` over this process' contiguous part of rows 0..n-1, gathered in row order on every
    process: each row is computed once, the result equals one process computing all rows."""
    processes = accelerator.num_processes
    if processes == 1 or n < processes:
        return compute(0, n)
    sizes = [len(part) for part in np.array_split(np.arange(n), processes)]
    start = sum(sizes[: accelerator.process_index])
    local = compute(start, start + sizes[accelerator.process_index])
    gathered = accelerator.gather(accelerator.pad_across_processes(local, dim=0))
    width = max(sizes)
    return torch.cat([gathered[i * width : i * width + size] for i, size in enumerate(sizes)])


def publish(item: Publication) -> None:
    """Save, card, push, and the results file last: its presence means the folder is complete."""
    folder = Path(item.folder)
    folder.mkdir(parents=True, exist_ok=True)
    if item.model is not None:
        save_folder(item.model, folder, item.processor, item.feature_extractor)
        if item.card is not None:
            (folder / "README.md").write_text(item.card)
        if item.push_to_hub:
            push_folder(folder, item.push_to_hub)
    write_json_atomic(folder / item.results_name, item.result)
    if item.model is not None:  # one line per saved folder (sweep cells write only their results)
        print(f"publish: wrote model, card and {item.results_name} to {folder}", flush=True)


def push_folder(folder: Path, repo_id: str) -> None:
    """Upload the saved folder (model, processor, card); checkpoints and temporary files stay local."""
    from huggingface_hub import create_repo, upload_folder

    create_repo(repo_id, exist_ok=True)
    upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        ignore_patterns=["checkpoints/*", ".*", "*.tmp", "*results.json"],
    )
