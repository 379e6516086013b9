"""`train.py finetune`: the genre classifier from a pretrained folder or from scratch (thesis 4.3-4.4).

Protocol: a nested stratified subset of N training examples (seeded), a validation part carved from it (grouped,
stratified when possible) for model selection, the head trained first and the audio tower unfrozen at
`unfreeze_epoch` with a lower learning rate (optimizer parameter groups; BatchNorm stays in eval mode while the
tower is frozen). The fixed test split is touched once, by the selected model. From scratch (`init="none"`, the
thesis' "Audio Encoder" baseline) the tower is random, so it trains from the first epoch at the head's rate.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .calibration import calibrate_classifier
from .cards import finetune_card, write_reliability_diagram
from .checkpoints import Progress, finished_result, resume_latest, save_checkpoint
from .collate import ClassificationCollator, EpochBatchSampler
from .data import GenreData, GenreSplit, check_mel_config, dataset_feature_config, load_genres
from .errors import InputError
from .metric_modules import classification_scores
from .models import load_classifier_init, mel_statistics, resolve_window_samples, save_folder
from .ood_fit import fit_classifier_ood
from .subsets import carve_validation, nested_order, plan_sizes


@dataclass
class FinetuneArgs:
    dataset: str
    init: str
    output: str
    n: int | None = None  # None: the whole training split
    seed: int = 0
    epochs: int = 30
    unfreeze_epoch: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    tower_learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    val_fraction: float = 0.2
    patience: int | None = (
        None  # early stopping: epochs without a better validation macro-F1 (after unfreezing)
    )
    window_samples: int | None = None
    checkpoint_every: int = 5  # epochs; 0 = no checkpoints (the sweep resumes per finished cell instead)
    resume: bool = False
    save_model: bool = True
    push_to_hub: str | None = None
    show_progress: bool = True
    max_examples: int | None = None  # training-example budget per run: fewer epochs (and earlier unfreezing)
    cap_n: bool = False  # the sweep caps N at the split size (and says so); a single run asked for more stops
    debug_kill_after_epoch: int | None = field(default=None, repr=False)  # tests: SIGKILL self after epoch k


class FinetuneProgress(Progress):
    """Epochs done, history and the best validation state so far (model selection survives a resume)."""

    def __init__(self) -> None:
        super().__init__()
        self.best: dict = {"score": -1.0, "epoch": 0, "state": None}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "best": self.best}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.best = state["best"]


def validate(args: FinetuneArgs) -> None:
    if args.epochs < 1 or args.batch_size < 1 or args.unfreeze_epoch < 0 or args.checkpoint_every < 0:
        raise InputError(
            "--epochs and --batch-size must be >= 1, --unfreeze-epoch and --checkpoint-every >= 0"
        )
    if not 0 < args.val_fraction < 1:
        raise InputError(f"--val-fraction must be in (0, 1), got {args.val_fraction}")
    if args.init != "none" and not Path(args.init).is_dir():
        raise InputError(
            f"--init {args.init!r}: no such model folder (or pass --init none to train from scratch)"
        )


def budgeted_schedule(
    epochs: int, unfreeze_epoch: int, n_fit: int, max_examples: int | None
) -> tuple[int, int]:
    """Epochs and unfreeze epoch under a budget of training examples seen: large subsets get fewer epochs, and
    the head-only phase shrinks in proportion (thesis: 10 of 30 epochs), so every N gets the same schedule shape
    and no run costs more than the budget (what makes the whole few-shot grid fit on 2 CPU cores)."""
    if not max_examples or n_fit * epochs <= max_examples:
        return epochs, unfreeze_epoch
    budgeted = max(1, -(-max_examples // n_fit))  # ceil
    return budgeted, round(unfreeze_epoch * budgeted / epochs)


def select_subset(
    genres: GenreData, n: int | None, seed: int, val_fraction: float, cap_n: bool = False
) -> dict:
    """The nested stratified subset of size N and its fit/validation parts."""
    available = len(genres.train)
    plan = plan_sizes([n or available], available)[0]
    if plan.capped and not cap_n:
        raise InputError(f"--n {n} is larger than the genres train split ({available} examples)")
    subset = nested_order(genres.train.labels, seed)[: plan.used]
    fit, val = carve_validation(
        genres.train.labels[subset], [genres.train.group_ids[i] for i in subset], val_fraction, seed
    )
    return {"plan": plan, "fit": subset[fit], "val": subset[val]}


@torch.no_grad()
def predict(model, split: GenreSplit, feature_extractor, batch_size: int = 64) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    predictions = []
    for start in range(0, len(split), batch_size):
        inputs = feature_extractor.window(split.mels[start : start + batch_size])
        logits = model(
            input_features=inputs["input_features"].to(device), window_mask=inputs["window_mask"].to(device)
        )
        predictions.append(logits.logits.argmax(-1).cpu().numpy())
    return np.concatenate(predictions)


def run(args: FinetuneArgs, genres: GenreData | None = None) -> dict:
    validate(args)
    output = Path(args.output)
    done = finished_result(
        output / "results.json", {k: v for k, v in asdict(args).items() if k != "debug_kill_after_epoch"}
    )
    if args.resume and done:
        print(f"{output}: already finished with these arguments; nothing to resume")
        return done
    started = time.time()
    dataset_fe = dataset_feature_config(args.dataset)
    genres = genres or load_genres(args.dataset, n_mels=(dataset_fe or {}).get("feature_size"))
    chosen = select_subset(genres, args.n, args.seed, args.val_fraction, args.cap_n)
    fit, val = genres.train.subset(chosen["fit"]), genres.train.subset(chosen["val"])

    accelerator = Accelerator()
    set_seed(args.seed)
    window_samples = resolve_window_samples(args.window_samples, dataset_fe)
    model, fe = load_classifier_init(args.init, genres.id2label, window_samples, mel_statistics(fit.mels))
    model.config.calibration_temperature = 1.0  # raw logits in training; fitted after it
    check_mel_config(dataset_fe, fe.to_dict(), f"dataset {args.dataset!r}")
    window_samples = model.config.window_samples  # a pretrained folder brings its own window
    from_scratch = args.init == "none"
    epochs, unfreeze_epoch = budgeted_schedule(args.epochs, args.unfreeze_epoch, len(fit), args.max_examples)
    unfreeze_epoch = 0 if from_scratch else unfreeze_epoch
    tower_lr = args.learning_rate if from_scratch else args.tower_learning_rate
    tower = {id(p) for p in model.audio_tower_parameters()}
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in model.parameters() if id(p) not in tower], "lr": args.learning_rate},
            {"params": model.audio_tower_parameters(), "lr": tower_lr},
        ],
        weight_decay=args.weight_decay,
    )
    sampler = EpochBatchSampler(len(fit), args.batch_size, args.seed)
    loader = DataLoader(  # own generator: iterators draw nothing from the global RNG (see pretrain.py)
        list(range(len(fit))),
        batch_sampler=sampler,
        collate_fn=ClassificationCollator(fit, fe),
        generator=torch.Generator().manual_seed(args.seed),
    )
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    unwrapped = accelerator.unwrap_model(model)
    progress = FinetuneProgress()
    accelerator.register_for_checkpointing(progress)
    resumed_from = resume_latest(accelerator, output) if args.resume else None

    num_labels = len(genres.label_names)
    bar = tqdm(
        total=epochs,
        initial=progress.step,
        desc=f"finetune n={chosen['plan'].used} seed={args.seed}",
        disable=not (args.show_progress and accelerator.is_local_main_process),
        leave=False,
    )
    for epoch in range(progress.step, epochs):
        if epoch >= unfreeze_epoch:
            unwrapped.unfreeze_audio_encoder()
        else:
            unwrapped.freeze_audio_encoder()
        loader.set_epoch(epoch)  # accelerate's loader re-sets its sampler's epoch on every __iter__
        model.train()
        losses = []
        for batch in loader:
            loss = model(**batch).loss
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        with torch.random.fork_rng():
            val_scores = classification_scores(predict(unwrapped, val, fe), val.labels, num_labels)
        progress.history.append(
            {
                "epoch": epoch + 1,
                "train_loss": float(np.mean(losses)),
                "val": val_scores,
                "tower_frozen": unwrapped.audio_encoder_frozen,
            }
        )
        if val_scores["macro_f1"] > progress.best["score"]:
            state = {k: v.detach().cpu().clone() for k, v in unwrapped.state_dict().items()}
            progress.best = {"score": val_scores["macro_f1"], "epoch": epoch + 1, "state": state}
        progress.step = epoch + 1
        bar.update(1)
        bar.set_postfix(val_f1=f"{val_scores['macro_f1']:.3f}")
        if args.checkpoint_every and progress.step % args.checkpoint_every == 0:
            save_checkpoint(accelerator, output, progress.step)
        if args.debug_kill_after_epoch == progress.step:
            os.kill(os.getpid(), signal.SIGKILL)
        stale = progress.step - max(progress.best["epoch"], unfreeze_epoch)
        if args.patience is not None and stale >= args.patience:
            break
    bar.close()

    unwrapped.load_state_dict(progress.best["state"])
    unwrapped.unfreeze_audio_encoder()  # a loaded classifier should train normally
    # Before publishing: temperature from the validation part, then the one pass over the test split.
    calibration, test_logits, test_v = calibrate_classifier(unwrapped, val, genres.test, fe)
    test_scores = classification_scores(test_logits.argmax(1), genres.test.labels, num_labels)
    ood = fit_classifier_ood(unwrapped, fit, val, test_v, fe) if args.save_model else None
    plan = chosen["plan"]
    result = {
        "dataset": args.dataset,
        "init": args.init,
        "seed": args.seed,
        "n_requested": plan.requested,
        "n_used": plan.used,
        "capped": plan.capped,
        "n_fit": len(fit),
        "n_val": len(val),
        "epochs": epochs,
        "unfreeze_epoch": unfreeze_epoch,
        "tower_learning_rate": tower_lr,
        "best_epoch": progress.best["epoch"],
        "best_val_macro_f1": progress.best["score"],
        "test": test_scores,
        "calibration": calibration,
        "ood": ood,
        "labels": genres.label_names,
        "window_samples": window_samples,
        "history": progress.history,
        "resumed_from": str(resumed_from) if resumed_from else None,
        "wall_seconds": round(time.time() - started, 1),
        "args": {k: v for k, v in asdict(args).items() if k != "debug_kill_after_epoch"},
    }
    if accelerator.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        if args.save_model:
            save_folder(unwrapped, output, feature_extractor=fe)
            write_reliability_diagram(result, output)
            (output / "README.md").write_text(finetune_card(result))
            if args.push_to_hub:
                unwrapped.push_to_hub(args.push_to_hub)
                fe.push_to_hub(args.push_to_hub)
        (output / "results.json").write_text(json.dumps(result, indent=2))
    accelerator.wait_for_everyone()
    return result


__all__ = ["FinetuneArgs", "run", "select_subset"]
