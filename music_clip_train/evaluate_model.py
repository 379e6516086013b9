"""`train.py evaluate`: retrieval on the held-out captions and zero-shot genres for a pretrained folder; test
scores and calibration for a classifier folder; for either, with `--ood-audio-dir`, the OOD flag's report."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .calibration import calibration_report, classifier_outputs
from .cards import add_evaluation
from .data import check_mel_config, dataset_feature_config, load_captions, load_genres
from .errors import InputError
from .evaluation import ZERO_SHOT_TEMPLATE, retrieval, zero_shot
from .launch import default_device
from .metric_modules import classification_scores
from .models import load_classifier, load_pretrained, read_config
from .ood_eval import ood_evaluation
from .subsets import holdout_split


@dataclass
class EvaluateArgs:
    model: str = field(metadata={"help": "pretrained model folder"})
    dataset: str = field(metadata={"help": "dataset folder or Hub id (captions + genres configs)"})
    output: str | None = field(
        default=None, metadata={"help": "JSON path (default: <model>/evaluation.json)"}
    )
    holdout: float | None = field(
        default=None, metadata={"help": "held-out fraction (default: the one the model was pretrained with)"}
    )
    seed: int | None = field(default=None, metadata={"help": "hold-out seed (default: the pretraining seed)"})
    template: str = field(
        default=ZERO_SHOT_TEMPLATE, metadata={"help": "zero-shot prompt with {} for the label"}
    )
    update_card: bool = field(default=True, metadata={"help": "add the scores to the model's README.md"})
    device: str | None = field(
        default=None,
        metadata={"help": "device to score on, e.g. cuda:1 (default: cuda when present, else cpu)"},
    )
    ood_audio_dir: str | None = field(
        default=None,
        metadata={
            "help": "audio unlike the training corpus: OOD flag rate there and on the test split, AUROC, near-OOD"
        },
    )


def scoring_device(requested: str | None) -> torch.device:
    """`--device`, checked before anything loads, else CUDA when present, else CPU."""
    try:
        device = torch.device(requested or default_device())
    except RuntimeError as err:
        raise InputError(f"--device {requested!r}: {err}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {requested}: no CUDA device here (use --device cpu)")
    return device


def run(args: EvaluateArgs) -> dict:
    device = scoring_device(args.device)
    if "MusicClipForAudioClassification" in (read_config(args.model).get("architectures") or []):
        model, fe, scores, genres = _classifier_scores(args, device)
    else:
        model, fe, scores, genres = _pretrained_scores(args, device)
    if args.ood_audio_dir:
        results = Path(args.model) / "results.json"  # a classifier's run: the same validation carving
        run_args = json.loads(results.read_text()).get("args", {}) if results.is_file() else {}
        with torch.no_grad():
            scores["ood"] = ood_evaluation(
                model,
                fe,
                genres,
                args.ood_audio_dir,
                run_args.get("val_fraction", 0.2),
                run_args.get("seed", 0),
            )
    path = Path(args.output) if args.output else Path(args.model) / "evaluation.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(scores, indent=2))
    card = Path(args.model) / "README.md"
    if args.update_card and card.is_file():
        add_evaluation(card, scores)
    return scores


def _classifier_scores(args: EvaluateArgs, device: torch.device) -> tuple:
    """Test macro-F1/accuracy and ECE before/after the stored temperature."""
    model, fe = load_classifier(args.model)
    model.to(device)
    check_mel_config(dataset_feature_config(args.dataset), fe.to_dict(), f"dataset {args.dataset!r}")
    genres = load_genres(args.dataset, n_mels=fe.feature_size)
    logits, _ = classifier_outputs(model, genres.test.mels, fe)
    scores = {
        "model": args.model,
        "dataset": args.dataset,
        "kind": "classifier",
        "test": classification_scores(logits.argmax(1), genres.test.labels, len(genres.label_names)),
        "calibration": calibration_report(logits, genres.test.labels, model.config.calibration_temperature),
    }
    return model, fe, scores, genres


def _pretrained_scores(args: EvaluateArgs, device: torch.device) -> tuple:
    model, processor = load_pretrained(args.model)
    model.to(device)
    fe, tokenizer = processor.feature_extractor, processor.tokenizer
    dataset_fe = dataset_feature_config(args.dataset)
    check_mel_config(dataset_fe, fe.to_dict(), f"dataset {args.dataset!r}")
    trained = Path(args.model) / "train_results.json"
    train_args = json.loads(trained.read_text())["args"] if trained.is_file() else {}
    holdout = args.holdout if args.holdout is not None else train_args.get("holdout", 0.1)
    seed = args.seed if args.seed is not None else train_args.get("seed", 0)
    # Pretrained on this dataset alone (a list since several datasets can pretrain one model; a str before).
    same_data = train_args.get("dataset") in (args.dataset, [args.dataset])
    captions = load_captions(args.dataset, n_mels=fe.feature_size)
    _, held_idx = holdout_split(captions.group_ids, holdout, seed)
    held = captions.subset(held_idx)
    genres = load_genres(args.dataset, n_mels=fe.feature_size)
    model.eval()
    with torch.no_grad():
        scores = {
            "model": args.model,
            "dataset": args.dataset,
            "objective": model.config.objective,
            "heldout": {
                "fraction": holdout,
                "seed": seed,
                "tracks": len(held),
                "same_split_as_pretraining": same_data,
            },
            "retrieval": retrieval(model, held, fe, tokenizer),
            "zero_shot": zero_shot(model, genres.test, genres.label_names, fe, tokenizer, args.template),
        }
    return model, fe, scores, genres
