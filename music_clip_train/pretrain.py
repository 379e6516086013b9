"""`train.py pretrain`: one objective on the captions config, on the shared loop (`loop.py`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from losses_music_clip import is_skipped_batch

from . import launch, loop
from .budgets import budgeted_epochs
from .cards import pretrain_card
from .collate import OBJECTIVES, PretrainCollator, flat_texts
from .data import CaptionData, check_mel_config, dataset_feature_config, load_captions, shared_feature_config
from .errors import InputError
from .evaluation import audio_embeddings, pooled_texts, retrieval
from .launch import HIDDEN
from .models import mel_statistics, new_pretrain_model, new_processor, resolve_window_samples
from .ood_fit import audio_v, fit_model_ood
from .sampler import EpochBatchSampler
from .subsets import holdout_split


@dataclass
class PretrainArgs(launch.LaunchArgs):
    dataset: list[str] = field(
        metadata={
            "help": "dataset folder(s) or Hub id(s) (captions config); several (`--dataset A B` or `--dataset A "
            "--dataset B`) pretrain on their captions together",
            "action": "extend",
        }
    )
    objective: str = field(metadata={"help": f"one of: {', '.join(OBJECTIVES)}"})
    output: str = field(metadata={"help": "model folder to write"})
    epochs: int = 10
    max_examples: int | None = field(
        default=None,
        metadata={
            "help": "budget of training examples seen: fewer epochs for large caption sets (budgets.py)"
        },
    )
    batch_size: int = 32
    learning_rate: float = 1e-3
    text_learning_rate: float = field(
        default=2e-5, metadata={"help": "text tower (only with --no-freeze-text)"}
    )
    weight_decay: float = 1e-4
    freeze_text: bool = field(
        default=True,
        metadata={
            "help": "encode the text tower once and cache it; only its v/z projections train (default)"
        },
    )
    audio_contrast_weight: float | None = field(
        default=None,
        metadata={
            "help": "weight of the audio-audio term (clips of one track are positives; batches then hold clips "
            "two by two per track; needs an even --batch-size); default off: the thesis objective alone"
        },
    )
    holdout: float = field(default=0.1, metadata={"help": "fraction of caption groups held out for eval"})
    seed: int = 0
    window_samples: int | None = field(
        default=None,
        metadata={
            "help": "audio window in samples at 16 kHz (default: the dataset's recorded window, else the thesis' "
            "4,320,000 = 4.5 min; 240000 = 15 s suits the bundled corpus)"
        },
    )
    text_tower: str | None = field(
        default=None, metadata={"help": "text model path or id (default: packaged MiniLM)"}
    )
    checkpoint_every: int = field(default=50, metadata={"help": "steps between accelerate checkpoints"})
    resume: bool = field(default=False, metadata={"help": "continue from the newest checkpoint in --output"})
    push_to_hub: str | None = field(default=None, metadata={"metavar": "REPO_ID"})
    debug_kill_after_step: int | None = field(
        default=None, repr=False, metadata=HIDDEN
    )  # SIGKILL after step k

    def __post_init__(self) -> None:
        if isinstance(self.dataset, str):  # one dataset, as the sweep and older callers pass it
            self.dataset = [self.dataset]


def load_pretraining_captions(datasets: list[str]) -> tuple[CaptionData, dict | None]:
    """The captions of every dataset as one (groups namespaced by dataset) and the mel front end they share."""
    if not datasets or len(set(datasets)) != len(datasets):
        raise InputError(f"--dataset needs one or more distinct datasets, got {datasets}")
    dataset_fe = shared_feature_config(datasets)
    n_mels = (dataset_fe or {}).get("feature_size")
    return CaptionData.union({d: load_captions(d, n_mels=n_mels) for d in datasets}), dataset_fe


def recorded_window(datasets: list[str], requested: int | None) -> int:
    """--window-samples, else the window the datasets' builds recorded (they must agree)."""
    windows = {(dataset_feature_config(d) or {}).get("window_samples") for d in datasets}
    if requested is None and len(windows) > 1:
        raise InputError(
            f"the datasets record different audio windows ({sorted(windows, key=str)}); pass --window-samples"
        )
    return resolve_window_samples(requested, {"window_samples": windows.pop()} if windows else None)


def freeze_unused_text_parts(model) -> None:
    """The text tower's pooled output is read from its last hidden states: a BERT/RoBERTa tower's own pooler
    never gets a gradient, and with several processes DDP would wait for it every step."""
    pooler = getattr(model.text_model, "pooler", None)
    if pooler is not None:
        pooler.requires_grad_(False)


def _heldout_loss(spec: PretrainSpec, model, loader) -> tuple[float | None, int]:
    """(mean loss, batches skipped): a batch STL/SMM cannot score (one group: no negative) is counted, not
    averaged in as a zero."""
    losses, skipped = [], 0
    # STL/SMM sample with the RNG: keep training's RNG untouched.
    with torch.no_grad(), torch.random.fork_rng():
        for batch in loader:  # global batches: with K processes each loss call scores all K parts together
            batch = loop.to_device(batch, model.device)
            loss = model(**spec.with_text(batch, spec.held_cache), return_loss=True).loss
            if is_skipped_batch(loss):
                skipped += 1
            else:
                losses.append(loss.item())
    return (sum(losses) / len(losses) if losses else None), skipped


class PretrainSpec(loop.TrainingSpec):
    results_name = "train_results.json"
    checkpoint_unit = "step"

    @property
    def desc(self) -> str:
        return f"pretrain {self.args.objective}"

    def validate(self) -> None:
        args = self.args
        if args.objective not in OBJECTIVES:
            raise InputError(f"unknown objective {args.objective!r}; choose one of: {', '.join(OBJECTIVES)}")
        if args.epochs < 1 or args.batch_size < 2 or args.checkpoint_every < 1:
            raise InputError("--epochs and --checkpoint-every must be >= 1 and --batch-size >= 2")
        if not 0 < args.holdout < 1:
            raise InputError(f"--holdout must be a fraction in (0, 1), got {args.holdout}")
        weight = args.audio_contrast_weight
        if weight is not None and not weight >= 0:
            raise InputError(f"--audio-contrast-weight must be >= 0, got {weight}")
        if weight and args.batch_size % 2:
            raise InputError(
                f"--audio-contrast-weight pairs clips: --batch-size must be even, got {args.batch_size}"
            )
        if (Path(args.output) / "config.json").exists() and not args.resume:
            raise InputError(f"{args.output} already holds a model; choose another --output or pass --resume")

    def setup(self, accelerator) -> loop.Parts:
        args = self.args
        data, dataset_fe = load_pretraining_captions(args.dataset)
        train_idx, held_idx = holdout_split(data.group_ids, args.holdout, args.seed)
        self.train, self.held = data.subset(train_idx), data.subset(held_idx)
        if len(self.train) < 2:
            raise InputError(f"only {len(self.train)} captions track(s) left for training after the hold-out")
        self.window_samples = recorded_window(args.dataset, args.window_samples)
        extra = (
            {}
            if args.audio_contrast_weight is None
            else {"audio_contrast_weight": args.audio_contrast_weight}
        )
        model = new_pretrain_model(args.objective, self.window_samples, args.text_tower, **extra)
        self.audio_contrast_weight = model.config.audio_contrast_weight
        self.pairs_clips = model.config.uses_audio_contrast
        self.processor = new_processor(model.config, *mel_statistics(self.train.mels), args.text_tower)
        where = f"dataset(s) {', '.join(args.dataset)}"
        check_mel_config(dataset_fe, self.processor.feature_extractor.to_dict(), where)
        model.to(accelerator.device)
        model.freeze_unused_heads()
        freeze_unused_text_parts(model)
        self.cache = self.held_cache = None
        if args.freeze_text:
            model.freeze_text_model()
            model.train()  # a frozen text tower stays in eval mode (no dropout in the cache)
            self.cache = self._pooled(model, self.train)
            self.held_cache = self._pooled(model, self.held)
        train_loader, sampler = self._loader(model, self.train, shuffle=True)
        self.held_loader = self._loader(model, self.held, shuffle=False)[0] if len(self.held) >= 2 else []
        text = {id(p) for p in model.text_tower_parameters()}
        trainable = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in trainable if id(p) not in text], "lr": args.learning_rate}]
        text_params = [p for p in trainable if id(p) in text]
        if text_params:
            groups.append({"params": text_params, "lr": args.text_learning_rate})
        optimizer = torch.optim.AdamW(groups, weight_decay=args.weight_decay)
        self.epochs = budgeted_epochs(args.epochs, len(self.train), args.max_examples)
        return loop.Parts(model, optimizer, train_loader, sampler, self.epochs)

    def _pooled(self, model, split) -> torch.Tensor:
        tokenizer = self.processor.tokenizer
        return pooled_texts(
            model, flat_texts(split, self.args.objective), tokenizer, model.config.text_max_length
        )

    def _loader(self, model, split, shuffle: bool) -> tuple[DataLoader, EpochBatchSampler]:
        """Training batches (shuffled, with the run's workers) or the held-out ones (in order, in this process)."""
        args = self.args
        accelerator = self.accelerator
        sampler = EpochBatchSampler(
            len(split),
            args.batch_size,
            args.seed,
            shuffle=shuffle,
            num_replicas=accelerator.num_processes,
            rank=accelerator.process_index,
            groups=split.group_ids if self.pairs_clips else None,  # the held-out batches too: same loss
        )
        collate = PretrainCollator(
            split,
            args.objective,
            self.processor.feature_extractor,
            self.processor.tokenizer,
            model.config.text_max_length,
            cached_text=args.freeze_text,
        )
        # Its own generator: creating an iterator then draws no number from the global RNG, which the losses use
        # (a resumed run creates one iterator more than an uninterrupted one).
        generator = torch.Generator().manual_seed(args.seed)
        data = list(range(len(split)))
        options = launch.loader_options(args, accelerator.device) if shuffle else {}
        loader = DataLoader(data, batch_sampler=sampler, collate_fn=collate, generator=generator, **options)
        return loader, sampler

    @staticmethod
    def with_text(batch: dict, cache: torch.Tensor | None) -> dict:
        """A frozen tower's texts come as rows of the pooled-output cache."""
        if cache is not None:
            batch["text_pooled"] = cache[batch.pop("text_index")]
        return batch

    def loss(self, model, batch: dict) -> torch.Tensor:
        return model(**self.with_text(batch, self.cache), return_loss=True).loss

    def evaluate(self, model, progress, epoch: int, losses: list[float]) -> dict:
        record = {
            "epoch": epoch,
            "step": progress.step,
            "train_loss": sum(losses) / len(losses),
        }
        record["heldout_loss"], record["heldout_skipped_batches"] = _heldout_loss(
            self, model, self.held_loader
        )
        fe, tokenizer = self.processor.feature_extractor, self.processor.tokenizer
        scores = None
        if len(self.held):
            # Each process embeds its part of the held-out clips once; every process scores the gathered whole.
            audio_z = loop.gather_rows(
                self.accelerator,
                lambda start, stop: audio_embeddings(model, self.held.mels[start:stop], fe),
                len(self.held),
            )
            with torch.random.fork_rng():
                scores = retrieval(model, self.held, fe, tokenizer, pooled=self.held_cache, audio_z=audio_z)
        if scores:
            record["heldout_recall"] = {
                d: {k: v for k, v in s.items() if k.startswith("recall")}
                for d, s in scores.items()
                if isinstance(s, dict)
            }
        self.accelerator.print(json.dumps(record))
        return record

    def result(self, model, progress) -> dict:
        args = self.args
        return {
            "objective": args.objective,
            "dataset": ", ".join(args.dataset),  # one string, as one-dataset results always had
            "datasets": args.dataset,
            "train_tracks": len(self.train),
            "heldout_tracks": len(self.held),
            "steps": progress.step,
            "epochs": self.epochs,
            "max_examples": args.max_examples,
            "freeze_text": args.freeze_text,
            "audio_contrast_weight": self.audio_contrast_weight,
            "window_samples": self.window_samples,
            "history": progress.history,
        }

    def before_publish(self, model, result: dict) -> None:
        # OOD statistics of the training clips, threshold from the held-out ones.
        fe = self.processor.feature_extractor
        result["ood"] = fit_model_ood(
            model, audio_v(model, self.train.mels, fe), audio_v(model, self.held.mels, fe)
        )

    def publication(self, model, result: dict) -> loop.Publication:
        model.unfreeze_text_model()  # saved weights are the same; a loaded model trains normally
        return loop.Publication(
            folder=Path(self.args.output),
            result=result,
            results_name=self.results_name,
            model=model,
            processor=self.processor,
            card=pretrain_card(result, model.config),
            push_to_hub=self.args.push_to_hub,
        )


def run(args: PretrainArgs) -> dict:
    return loop.run(PretrainSpec(args))


__all__ = ["PretrainArgs", "PretrainSpec", "run"]
