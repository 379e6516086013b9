"""`train.py finetune`: the genre classifier from a pretrained folder or from scratch (thesis 4.3-4.4).

Protocol: a nested stratified subset of N training examples (seeded), a validation part carved from it (grouped,
stratified when possible) for model selection, the head trained first and the audio tower unfrozen at
`unfreeze_epoch` with a lower learning rate (optimizer parameter groups; BatchNorm stays in eval mode while the
tower is frozen). The fixed test split is touched once, by the selected model. From scratch (`init="none"`, the
thesis' "Audio Encoder" baseline) the tower is random, so it trains from the first epoch at the head's rate.
Runs on the shared loop (`loop.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import launch, loop
from .calibration import calibrate_classifier
from .cards import finetune_card, write_reliability_diagram
from .checkpoints import Progress
from .collate import ClassificationCollator
from .data import GenreData, GenreSplit, check_mel_config, dataset_feature_config, load_genres
from .errors import InputError
from .launch import HIDDEN
from .metric_modules import classification_scores
from .models import load_classifier_init, mel_statistics, resolve_window_samples
from .ood_fit import fit_classifier_ood
from .sampler import EpochBatchSampler
from .subsets import N_UNIT_NOUNS, N_UNITS, balanced_tracks, carve_validation, nested_order, plan_sizes


@dataclass
class FinetuneArgs(launch.LaunchArgs):
    dataset: str = field(metadata={"help": "dataset folder or Hub id (captions + genres configs)"})
    init: str = field(metadata={"help": "pretrained model folder, or 'none' for the from-scratch baseline"})
    output: str = field(metadata={"help": "classifier folder to write"})
    n: int | None = field(
        default=None, metadata={"help": "training-subset size (default: the whole train split)"}
    )
    n_unit: str = field(
        default="clips",
        metadata={"choices": list(N_UNITS), "help": "what --n counts: " + "; ".join(N_UNITS.values())},
    )
    seed: int = 0
    epochs: int = 30
    unfreeze_epoch: int = field(default=10, metadata={"help": "epoch at which the audio tower is unfrozen"})
    batch_size: int = 32
    learning_rate: float = 1e-3
    tower_learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    val_fraction: float = 0.2
    patience: int | None = field(
        default=None,
        metadata={"help": "early stopping: stop after this many epochs without a better validation macro-F1"},
    )
    window_samples: int | None = field(
        default=None,
        metadata={"help": "audio window (from scratch only; a pretrained folder brings its own)"},
    )
    checkpoint_every: int = field(default=5, metadata={"help": "epochs between checkpoints (0: none)"})
    resume: bool = field(default=False, metadata={"help": "continue from the newest checkpoint in --output"})
    save_model: bool = field(default=True, metadata=HIDDEN)  # the sweep keeps results only
    push_to_hub: str | None = field(default=None, metadata={"metavar": "REPO_ID"})
    show_progress: bool = field(default=True, metadata=HIDDEN)
    max_examples: int | None = field(
        default=None, metadata={"help": "budget of training examples seen (fewer epochs for large N)"}
    )
    cap_n: bool = field(default=False, metadata=HIDDEN)  # the sweep caps N at the split size (and says so)
    objective: str | None = field(default=None, metadata=HIDDEN)  # the sweep's row, recorded in the results
    debug_kill_after_epoch: int | None = field(
        default=None, repr=False, metadata=HIDDEN
    )  # SIGKILL after epoch k


class FinetuneProgress(Progress):
    """Steps done, history and the best validation state so far (model selection survives a resume)."""

    def __init__(self) -> None:
        super().__init__()
        self.best: dict = {"score": -1.0, "epoch": 0, "state": None}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "best": self.best}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.best = state["best"]


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


def available_units(split: GenreSplit, n_unit: str) -> int:
    """How many clips, or tracks, a training split offers (the largest N)."""
    return len(set(split.group_ids)) if n_unit == "tracks" else len(split)


def select_subset(
    genres: GenreData,
    n: int | None,
    seed: int,
    val_fraction: float,
    cap_n: bool = False,
    n_unit: str = "clips",
) -> dict:
    """The nested stratified subset of size N (`n_unit`: clips or tracks) and its fit/validation parts."""
    train = genres.train
    available = available_units(train, n_unit)
    plan = plan_sizes([n or available], available)[0]
    if plan.capped and not cap_n:
        raise InputError(
            f"--n {n} is larger than the genres train split ({available} {N_UNIT_NOUNS[n_unit]})"
        )
    if n_unit == "tracks":
        subset = np.asarray(
            [i for track in balanced_tracks(train.labels, seed, train.group_ids)[: plan.used] for i in track],
            dtype=np.int64,
        )
    else:  # clips, drawn by whole tracks (groups): see `nested_order`
        subset = nested_order(train.labels, seed, train.group_ids)[: plan.used]
    groups = [train.group_ids[i] for i in subset]
    fit, val = carve_validation(train.labels[subset], groups, val_fraction, seed)
    return {
        "plan": plan,
        "fit": subset[fit],
        "val": subset[val],
        "n_tracks": len(set(groups)),
        "n_clips": len(subset),
    }


@torch.no_grad()
def logits(model, mels: list[np.ndarray], feature_extractor, batch_size: int = 64) -> torch.Tensor:
    device = next(model.parameters()).device
    chunks = [torch.empty(0, model.config.num_labels, device=device)]
    for start in range(0, len(mels), batch_size):
        inputs = feature_extractor.window(mels[start : start + batch_size])
        output = model(
            input_features=inputs["input_features"].to(device), window_mask=inputs["window_mask"].to(device)
        )
        chunks.append(output.logits)
    return torch.cat(chunks)


def predict(model, split: GenreSplit, feature_extractor, accelerator=None) -> np.ndarray:
    """Predicted labels; with an accelerator each process scores its part of the clips once (gathered)."""
    model.eval()
    if accelerator is None:
        return logits(model, split.mels, feature_extractor).argmax(-1).cpu().numpy()
    scores = loop.gather_rows(
        accelerator, lambda start, stop: logits(model, split.mels[start:stop], feature_extractor), len(split)
    )
    return scores.argmax(-1).cpu().numpy()


class FinetuneSpec(loop.TrainingSpec):
    def __init__(self, args: FinetuneArgs, genres: GenreData | None = None) -> None:
        super().__init__(args)
        self.genres = genres
        self.show_progress = args.show_progress

    @property
    def desc(self) -> str:
        return f"finetune n={self.args.n} seed={self.args.seed}"

    def validate(self) -> None:
        args = self.args
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

    def setup(self, accelerator) -> loop.Parts:
        args = self.args
        dataset_fe = dataset_feature_config(args.dataset)
        genres = self.genres or load_genres(args.dataset, n_mels=(dataset_fe or {}).get("feature_size"))
        self.genres = genres
        self.chosen = select_subset(genres, args.n, args.seed, args.val_fraction, args.cap_n, args.n_unit)
        self.fit, self.val = genres.train.subset(self.chosen["fit"]), genres.train.subset(self.chosen["val"])
        window_samples = resolve_window_samples(args.window_samples, dataset_fe)
        model, self.fe = load_classifier_init(
            args.init, genres.id2label, window_samples, mel_statistics(self.fit.mels)
        )
        model.config.calibration_temperature = 1.0  # raw logits in training; fitted after it
        check_mel_config(dataset_fe, self.fe.to_dict(), f"dataset {args.dataset!r}")
        from_scratch = args.init == "none"
        epochs, unfreeze_epoch = budgeted_schedule(
            args.epochs, args.unfreeze_epoch, len(self.fit), args.max_examples
        )
        self.epochs, self.unfreeze_epoch = epochs, 0 if from_scratch else unfreeze_epoch
        self.tower_lr = args.learning_rate if from_scratch else args.tower_learning_rate
        tower = {id(p) for p in model.audio_tower_parameters()}
        optimizer = torch.optim.AdamW(
            [
                {"params": [p for p in model.parameters() if id(p) not in tower], "lr": args.learning_rate},
                {"params": model.audio_tower_parameters(), "lr": self.tower_lr},
            ],
            weight_decay=args.weight_decay,
        )
        sampler = EpochBatchSampler(
            len(self.fit),
            args.batch_size,
            args.seed,
            num_replicas=accelerator.num_processes,
            rank=accelerator.process_index,
        )
        loader = DataLoader(  # own generator: iterators draw nothing from the global RNG (see pretrain.py)
            list(range(len(self.fit))),
            batch_sampler=sampler,
            collate_fn=ClassificationCollator(self.fit, self.fe),
            generator=torch.Generator().manual_seed(args.seed),
            **launch.loader_options(args, accelerator.device),
        )
        return loop.Parts(model, optimizer, loader, sampler, self.epochs)

    def new_progress(self) -> FinetuneProgress:
        return FinetuneProgress()

    def start_epoch(self, model, epoch: int) -> None:
        if epoch >= self.unfreeze_epoch:
            model.unfreeze_audio_encoder()
        else:
            model.freeze_audio_encoder()

    def loss(self, model, batch: dict) -> torch.Tensor:
        return model(**batch).loss

    def evaluate(self, model, progress, epoch: int, losses: list[float]) -> dict:
        num_labels = len(self.genres.label_names)
        with torch.random.fork_rng():
            val_scores = classification_scores(
                predict(model, self.val, self.fe, self.accelerator), self.val.labels, num_labels
            )
        return {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            "val": val_scores,
            "tower_frozen": model.audio_encoder_frozen,
        }

    def after_epoch(self, model, progress: FinetuneProgress, epoch: int) -> bool:
        score = progress.history[-1]["val"]["macro_f1"]
        if score > progress.best["score"]:
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            progress.best = {"score": score, "epoch": epoch, "state": state}
        stale = epoch - max(progress.best["epoch"], self.unfreeze_epoch)
        return self.args.patience is not None and stale >= self.args.patience

    def result(self, model, progress: FinetuneProgress) -> dict:
        args, genres, plan = self.args, self.genres, self.chosen["plan"]
        model.load_state_dict(progress.best["state"])
        model.unfreeze_audio_encoder()  # a loaded classifier should train normally
        test = genres.test
        test_scores = classification_scores(
            predict(model, test, self.fe, self.accelerator), test.labels, len(genres.label_names)
        )
        result = {
            "dataset": args.dataset,
            "init": args.init,
            "seed": args.seed,
            "n_requested": plan.requested,
            "n_used": plan.used,
            "capped": plan.capped,
            "n_unit": args.n_unit,
            "n_tracks": self.chosen["n_tracks"],  # groups (tracks) the N training clips come from
            "n_clips": self.chosen["n_clips"],
            "n_fit": len(self.fit),
            "n_val": len(self.val),
            "epochs": self.epochs,
            "unfreeze_epoch": self.unfreeze_epoch,
            "tower_learning_rate": self.tower_lr,
            "best_epoch": progress.best["epoch"],
            "best_val_macro_f1": progress.best["score"],
            "test": test_scores,
            "labels": genres.label_names,
            "window_samples": model.config.window_samples,  # a pretrained folder brings its own window
            "history": progress.history,
        }
        if args.objective:
            result["objective"] = args.objective
        return result

    def before_publish(self, model, result: dict) -> None:
        # Temperature from the validation part (never the test split), then OOD statistics of the fit part.
        calibration, _, test_v = calibrate_classifier(model, self.val, self.genres.test, self.fe)
        result["calibration"] = calibration
        save = self.args.save_model
        result["ood"] = fit_classifier_ood(model, self.fit, self.val, test_v, self.fe) if save else None
        if save and self.accelerator.is_main_process:
            Path(self.args.output).mkdir(parents=True, exist_ok=True)
            write_reliability_diagram(result, Path(self.args.output))

    def publication(self, model, result: dict) -> loop.Publication:
        args = self.args
        if not args.save_model:
            return loop.Publication(Path(args.output), result, self.results_name)
        return loop.Publication(
            folder=Path(args.output),
            result=result,
            results_name=self.results_name,
            model=model,
            feature_extractor=self.fe,
            card=finetune_card(result, model.config),
            push_to_hub=args.push_to_hub,
        )

    def saved(self, folder: Path) -> bool:
        return not self.args.save_model or super().saved(folder)


def run(args: FinetuneArgs, genres: GenreData | None = None) -> dict:
    return loop.run(FinetuneSpec(args, genres))


__all__ = ["FinetuneArgs", "FinetuneSpec", "run", "select_subset"]
