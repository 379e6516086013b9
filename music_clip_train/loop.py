"""The one training loop under `train.py pretrain` and `train.py finetune`.

`run(spec)` owns the Accelerator, `prepare`, resume, the epoch loop with its evaluation hook, checkpoints and the
one publish step (model folder, card, results file, push). A `TrainingSpec` says only what differs: how to build
the model, data and optimizer, the loss of a batch, what an epoch's evaluation records, and what gets published.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from . import launch
from .checkpoints import Progress, finished_result, resume_from, save_checkpoint
from .launch import launch_record
from .markers import weights_loadable, write_json_atomic
from .sampler import EpochBatchSampler
from .tracking import StepLogger


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


@dataclass
class Session:
    """One invocation's training state."""

    accelerator: Accelerator
    model: torch.nn.Module  # as prepared: DDP-wrapped with several processes
    module: torch.nn.Module  # the model itself (the same object after a re-wrap)
    optimizer: Any
    scheduler: Any
    parts: Parts
    progress: Progress
    trained: frozenset[str]  # the parameters the current wrapper was built to train
    logger: StepLogger
    resumed_from: Path | None = None
    step_seconds: float = 0.0
    samples: int = 0  # rows this process trained on in this invocation

    @property
    def steps_per_epoch(self) -> int:
        return len(self.parts.loader)  # global batches: the same on every process

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.parts.epochs


def run(spec: TrainingSpec) -> dict:
    spec.validate()
    launch.validate_knobs(spec.args)
    args = spec.args
    output = Path(args.output)
    accelerator = launch.new_accelerator(args, output)  # first: it sets up the processes (torchrun's K)
    launch.resolve(args, accelerator)
    done = finished_result(output / spec.results_name, spec.recorded_args())
    if args.resume and done and spec.saved(output):
        if accelerator.is_main_process:
            print(f"{output}: already finished with these arguments; nothing to resume")
        return done
    set_seed(args.seed)
    started = time.time()
    spec.accelerator = accelerator
    session = start_session(spec, accelerator, output)
    train_epochs(spec, session, output)
    result = finish(spec, session, started)
    session.logger.end()  # last: Accelerate's `end_training` also ends the process group
    return result


def start_session(spec: TrainingSpec, accelerator: Accelerator, output: Path) -> Session:
    args = spec.args
    parts = spec.setup(accelerator)
    spec.start_epoch(parts.model, 0)  # what trains first is decided before DDP wraps the model
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(parts.model) if args.sync_batchnorm else parts.model
    scheduler = launch.new_scheduler(args, parts.optimizer, len(parts.loader) * parts.epochs)
    # The loader is not prepared: its sampler already gives each process its part of the global batch.
    model, optimizer = accelerator.prepare(model, parts.optimizer)
    progress = spec.new_progress()
    accelerator.register_for_checkpointing(progress)
    if launch.scheduler_is_stateful(args):
        accelerator.register_for_checkpointing(scheduler)
    resumed_from = resume_from(accelerator, output, args.resume, args.resume_from_checkpoint)
    module = accelerator.unwrap_model(model)
    project = type(spec).__name__.removesuffix("Spec").lower()
    logger = StepLogger(accelerator, args.logging_steps, project, spec.recorded_args())
    return Session(
        accelerator,
        model,
        module,
        optimizer,
        scheduler,
        parts,
        progress,
        launch.trainable(module),
        logger,
        resumed_from,
    )


def train_epochs(spec: TrainingSpec, s: Session, output: Path) -> None:
    bar = tqdm(
        total=s.total_steps,
        initial=s.progress.step,
        desc=spec.desc,
        disable=not (spec.show_progress and s.accelerator.is_local_main_process),
        leave=False,
    )
    kill_epoch = getattr(spec.args, "debug_kill_after_epoch", None)
    while s.progress.step < s.total_steps:
        epoch, done_in_epoch = divmod(s.progress.step, s.steps_per_epoch)
        spec.start_epoch(s.module, epoch)
        now_trained = launch.trainable(s.module)
        if now_trained != s.trained and isinstance(s.model, torch.nn.parallel.DistributedDataParallel):
            s.model = launch.rewrap(s.accelerator, s.model)
        s.trained = now_trained
        s.parts.sampler.set_epoch(
            epoch, start=done_in_epoch
        )  # a mid-epoch resume skips the batches it trained
        train_one_epoch(spec, s, bar, output)
        stop = end_epoch(spec, s, epoch + 1, output)
        if kill_epoch == epoch + 1:
            _kill_self()
        if stop:
            break
    bar.close()


def train_one_epoch(spec: TrainingSpec, s: Session, bar: tqdm, output: Path) -> None:
    kill_step = getattr(spec.args, "debug_kill_after_step", None)
    s.model.train()
    started = time.perf_counter()
    for batch in s.parts.loader:
        rows = len(batch["input_features"])
        loss = train_step(spec, s, batch)
        s.progress.step += 1
        s.progress.epoch_losses.append(loss)
        s.samples += rows
        s.logger.step(s.progress.step, loss, rows, s.scheduler.get_last_lr())
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        tag = _checkpoint_tag(spec, s.progress, False, s.steps_per_epoch)
        if tag is not None:
            save_checkpoint(s.accelerator, output, tag, spec.args.save_total_limit)
        if kill_step == s.progress.step:
            _kill_self()
    s.step_seconds += time.perf_counter() - started  # checkpoints included, evaluation not


def train_step(spec: TrainingSpec, s: Session, batch: dict) -> float:
    """One batch: forward and backward; on the batch that ends an accumulation, clip, step and schedule."""
    accelerator, max_norm = s.accelerator, spec.args.max_grad_norm
    with accelerator.accumulate(s.model):
        loss = spec.loss(s.model, to_device(batch, accelerator.device))
        accelerator.backward(loss)
        if max_norm and accelerator.sync_gradients:
            accelerator.clip_grad_norm_(s.model.parameters(), max_norm)
        s.optimizer.step()  # Accelerate skips it on the batches inside an accumulation
        if accelerator.sync_gradients and not s.optimizer.step_was_skipped:
            s.scheduler.step()
        s.optimizer.zero_grad()
    return loss.item()


def end_epoch(spec: TrainingSpec, s: Session, epoch: int, output: Path) -> bool:
    """Evaluate epoch `epoch` (1-based), record it, checkpoint; True stops training early."""
    s.module.eval()
    sync_buffers(s.accelerator, s.module)
    record = spec.evaluate(s.module, s.progress, epoch, s.progress.epoch_losses)
    s.progress.history.append(record)
    s.logger.epoch(s.progress.step, record)
    s.progress.epoch_losses = []
    stop = spec.after_epoch(s.module, s.progress, epoch)
    tag = _checkpoint_tag(spec, s.progress, True, s.steps_per_epoch)
    if tag is not None:
        save_checkpoint(s.accelerator, output, tag, spec.args.save_total_limit)
    return stop


def finish(spec: TrainingSpec, s: Session, started: float) -> dict:
    """The result, its card and files: written once, by the main process."""
    accelerator = s.accelerator
    result = spec.result(s.module, s.progress)
    samples = accelerator.reduce(torch.tensor([float(s.samples)], device=accelerator.device), "sum").item()
    record = launch_record(accelerator, spec.args)
    result.update(
        launch=record,
        mixed_precision=record["mixed_precision"],
        resumed_from=str(s.resumed_from) if s.resumed_from else None,
        wall_seconds=round(time.time() - started, 1),
        step_seconds=round(s.step_seconds, 2),  # training steps of this invocation only
        train_samples_per_second=round(samples / s.step_seconds, 2) if s.step_seconds else None,
        args=spec.recorded_args(),
    )
    spec.before_publish(s.module, result)
    if accelerator.is_main_process:
        publish(spec.publication(s.module, result))
    accelerator.wait_for_everyone()
    return result


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


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
        from .models import save_folder  # here: the loop itself runs without the feature extractor's imports

        if item.card is not None:  # first: `save_pretrained` writes its generic card only where none exists
            (folder / "README.md").write_text(item.card, encoding="utf-8")
        save_folder(item.model, folder, item.processor, item.feature_extractor)
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
