"""`train.py pretrain`: one objective on the captions config, with Accelerate (CPU, one or many GPUs)."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .cards import pretrain_card
from .checkpoints import Progress, finished_result, resume_latest, save_checkpoint
from .collate import OBJECTIVES, EpochBatchSampler, PretrainCollator, flat_texts
from .data import check_mel_config, dataset_feature_config, load_captions
from .errors import InputError
from .evaluation import pooled_texts, retrieval
from .models import mel_statistics, new_pretrain_model, new_processor, resolve_window_samples, save_folder
from .ood_fit import audio_v, fit_model_ood
from .subsets import holdout_split


@dataclass
class PretrainArgs:
    dataset: str
    objective: str
    output: str
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    text_learning_rate: float = 2e-5
    weight_decay: float = 1e-4
    freeze_text: bool = True
    holdout: float = 0.1
    seed: int = 0
    window_samples: int | None = None
    text_tower: str | None = None
    checkpoint_every: int = 50
    resume: bool = False
    push_to_hub: str | None = None
    debug_kill_after_step: int | None = field(default=None, repr=False)  # tests: SIGKILL self after step k


def validate(args: PretrainArgs) -> None:
    if args.objective not in OBJECTIVES:
        raise InputError(f"unknown objective {args.objective!r}; choose one of: {', '.join(OBJECTIVES)}")
    if args.epochs < 1 or args.batch_size < 2 or args.checkpoint_every < 1:
        raise InputError("--epochs and --checkpoint-every must be >= 1 and --batch-size >= 2")
    if not 0 < args.holdout < 1:
        raise InputError(f"--holdout must be a fraction in (0, 1), got {args.holdout}")
    if (Path(args.output) / "config.json").exists() and not args.resume:
        raise InputError(f"{args.output} already holds a model; choose another --output or pass --resume")


def _text_v(model, batch: dict, cache: torch.Tensor | None) -> torch.Tensor | None:
    # Frozen tower: the cached pooled outputs go through the trainable v layer here; z follows in forward.
    return None if cache is None else model.text_projection.v(cache[batch.pop("text_index")])


def _heldout_loss(model, loader, cache) -> float | None:
    losses = []
    with (
        torch.no_grad(),
        torch.random.fork_rng(),
    ):  # STL/SMM sample with the RNG: keep training's RNG untouched
        for batch in loader:  # not prepared by accelerate: move it to the model's device here
            batch = {k: v.to(model.device) for k, v in batch.items()}
            text_v = _text_v(model, batch, cache)
            losses.append(model(**batch, text_v=text_v, return_loss=True).loss.item())
    return sum(losses) / len(losses) if losses else None


def run(args: PretrainArgs) -> dict:
    validate(args)
    output = Path(args.output)
    done = finished_result(
        output / "train_results.json", {k: v for k, v in asdict(args).items() if k != "debug_kill_after_step"}
    )
    if args.resume and done:
        print(f"{output}: already finished with these arguments; nothing to resume")
        return done
    accelerator = Accelerator()
    set_seed(args.seed)
    started = time.time()

    dataset_fe = dataset_feature_config(args.dataset)
    data = load_captions(args.dataset, n_mels=(dataset_fe or {}).get("feature_size"))
    train_idx, held_idx = holdout_split(data.group_ids, args.holdout, args.seed)
    train, held = data.subset(train_idx), data.subset(held_idx)
    if len(train) < 2:
        raise InputError(f"only {len(train)} captions track(s) left for training after the hold-out")

    window_samples = resolve_window_samples(args.window_samples, dataset_fe)
    model = new_pretrain_model(args.objective, window_samples, args.text_tower)
    processor = new_processor(model.config, *mel_statistics(train.mels), args.text_tower)
    fe, tokenizer = processor.feature_extractor, processor.tokenizer
    check_mel_config(dataset_fe, fe.to_dict(), f"dataset {args.dataset!r}")
    model.to(accelerator.device)

    # Parameters this objective's loss never touches get no gradient; DDP (multi-process) would wait for them.
    if args.objective != "matching":
        model.matching_head.requires_grad_(False)
    if args.objective in ("triplet", "matching"):
        model.logit_scale.requires_grad_(False)
    cache = held_cache = None
    if args.freeze_text:
        model.text_model.requires_grad_(False)
        model.text_model.eval()
        max_length = model.config.text_max_length
        cache = pooled_texts(model, flat_texts(train, args.objective), tokenizer, max_length)
        held_cache = pooled_texts(model, flat_texts(held, args.objective), tokenizer, max_length)

    def loader(split, shuffle: bool) -> tuple[DataLoader, EpochBatchSampler]:
        sampler = EpochBatchSampler(len(split), args.batch_size, args.seed, shuffle=shuffle)
        collate = PretrainCollator(
            split, args.objective, fe, tokenizer, model.config.text_max_length, cached_text=args.freeze_text
        )
        # Its own generator: creating an iterator then draws no number from the global RNG, which the losses use
        # (a resumed run creates one iterator more than an uninterrupted one).
        generator = torch.Generator().manual_seed(args.seed)
        return DataLoader(
            list(range(len(split))), batch_sampler=sampler, collate_fn=collate, generator=generator
        ), sampler

    train_loader, sampler = loader(train, shuffle=True)
    held_loader, _ = loader(held, shuffle=False) if len(held) >= 2 else ([], None)
    text_params = [p for n, p in model.named_parameters() if n.startswith("text_model.") and p.requires_grad]
    other_params = [
        p for n, p in model.named_parameters() if not n.startswith("text_model.") and p.requires_grad
    ]
    groups = [{"params": other_params, "lr": args.learning_rate}]
    if text_params:
        groups.append({"params": text_params, "lr": args.text_learning_rate})
    optimizer = torch.optim.AdamW(groups, weight_decay=args.weight_decay)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    progress = Progress()
    accelerator.register_for_checkpointing(progress)

    resumed_from = resume_latest(accelerator, output) if args.resume else None
    steps_per_epoch = len(train_loader)  # per process: accelerate shards the batches
    total_steps = steps_per_epoch * args.epochs
    unwrapped = accelerator.unwrap_model(model)
    bar = tqdm(
        total=total_steps,
        initial=progress.step,
        desc=f"pretrain {args.objective}",
        disable=not accelerator.is_local_main_process,
    )
    while progress.step < total_steps:
        epoch, done_in_epoch = divmod(progress.step, steps_per_epoch)
        train_loader.set_epoch(epoch)  # accelerate's loader re-sets its sampler's epoch on every __iter__
        sampler.set_epoch(epoch)  # ... except through skip_first_batches' wrapper: set it directly too
        model.train()
        if args.freeze_text:
            unwrapped.text_model.eval()
        batches = (
            accelerator.skip_first_batches(train_loader, done_in_epoch) if done_in_epoch else train_loader
        )
        for batch in batches:
            text_v = _text_v(unwrapped, batch, cache)
            loss = model(**batch, text_v=text_v, return_loss=True).loss
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            progress.step += 1
            progress.epoch_losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            # An epoch's last step is saved after its evaluation below, so a resume never loses the record.
            if progress.step % args.checkpoint_every == 0 and progress.step % steps_per_epoch:
                save_checkpoint(accelerator, output, progress.step)
            if args.debug_kill_after_step == progress.step:
                os.kill(os.getpid(), signal.SIGKILL)
        unwrapped.eval()
        record = {
            "epoch": epoch + 1,
            "step": progress.step,
            "train_loss": sum(progress.epoch_losses) / len(progress.epoch_losses),
            "heldout_loss": _heldout_loss(unwrapped, held_loader, held_cache),
        }
        with torch.random.fork_rng():
            scores = retrieval(unwrapped, held, fe, tokenizer, pooled=held_cache) if len(held) else None
        if scores:
            record["heldout_recall"] = {
                d: {k: v for k, v in s.items() if k.startswith("recall")}
                for d, s in scores.items()
                if isinstance(s, dict)
            }
        progress.history.append(record)
        progress.epoch_losses = []
        accelerator.print(json.dumps(record))
        if progress.step % args.checkpoint_every == 0:
            save_checkpoint(accelerator, output, progress.step)
    bar.close()
    # Before publishing: OOD statistics of the training clips, threshold from the held-out ones.
    ood = fit_model_ood(unwrapped, audio_v(unwrapped, train.mels, fe), audio_v(unwrapped, held.mels, fe))

    result = {
        "objective": args.objective,
        "dataset": args.dataset,
        "train_tracks": len(train),
        "heldout_tracks": len(held),
        "steps": progress.step,
        "epochs": args.epochs,
        "freeze_text": args.freeze_text,
        "window_samples": window_samples,
        "resumed_from": str(resumed_from) if resumed_from else None,
        "history": progress.history,
        "ood": ood,
        "wall_seconds": round(time.time() - started, 1),
        "args": {k: v for k, v in asdict(args).items() if k != "debug_kill_after_step"},
    }
    if accelerator.is_main_process:
        unwrapped.text_model.requires_grad_(
            True
        )  # saved weights are the same; a loaded model trains normally
        save_folder(unwrapped, output, processor)
        (output / "train_results.json").write_text(json.dumps(result, indent=2))
        (output / "README.md").write_text(pretrain_card(result))
        if args.push_to_hub:
            unwrapped.push_to_hub(args.push_to_hub)
            processor.push_to_hub(args.push_to_hub)
            from huggingface_hub import upload_file

            upload_file(
                path_or_fileobj=str(output / "README.md"), path_in_repo="README.md", repo_id=args.push_to_hub
            )
    accelerator.wait_for_everyone()
    return result
