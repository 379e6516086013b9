"""Build, check and save model folders (the Hub files are imported from the project's top-level modules)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer
from transformers.utils import logging as hf_logging

from configuration_music_clip import MusicClipConfig
from feature_extraction_music_clip import MusicClipFeatureExtractor
from modeling_music_clip import MusicClipForAudioClassification, MusicClipModel, default_text_tower
from processing_music_clip import MusicClipProcessor

from .errors import InputError

THESIS_WINDOW_SAMPLES = 4_320_000


def mel_statistics(mels: list[np.ndarray]) -> tuple[list[float], list[float]]:
    """Per-bin mean/std over every stored frame of the training mels (stored in the extractor config)."""
    frames = np.concatenate(mels, axis=0).astype(np.float64)
    return frames.mean(0).tolist(), np.maximum(frames.std(0), 1e-5).tolist()


def resolve_window_samples(requested: int | None, dataset_fe: dict | None) -> int:
    """Explicit value, else the window the dataset builder recorded, else the thesis' 4.5-minute window."""
    if requested:
        return requested
    if dataset_fe and dataset_fe.get("window_samples"):
        return int(dataset_fe["window_samples"])
    return THESIS_WINDOW_SAMPLES


def read_config(path: str | Path) -> dict:
    """The checkpoint's config.json; a clear error for a folder that is not a MusicCLIP model."""
    if not Path(path).exists():
        raise InputError(f"{path} not found (no such folder; train.py loads models from local folders only)")
    config_path = Path(path) / "config.json"
    if not config_path.is_file():
        raise InputError(f"{path} is not a model folder (no config.json)")
    config = json.loads(config_path.read_text())
    if config.get("model_type") != MusicClipConfig.model_type:
        raise InputError(
            f"{path} holds a {config.get('model_type')!r} model ({', '.join(config.get('architectures') or [])}); "
            "expected a MusicCLIP checkpoint (model_type 'music_clip') written by `train.py pretrain`"
        )
    return config


def new_pretrain_model(
    objective: str, window_samples: int, text_tower: str | None, **config
) -> MusicClipModel:
    return MusicClipModel.from_text_pretrained(
        text_tower, objective=objective, window_samples=window_samples, **config
    )


def new_processor(config: MusicClipConfig, mel_mean, mel_std, text_tower: str | None) -> MusicClipProcessor:
    fe = MusicClipFeatureExtractor.from_model_config(config, mel_mean=mel_mean, mel_std=mel_std)
    tokenizer = AutoTokenizer.from_pretrained(text_tower or default_text_tower())
    return MusicClipProcessor(fe, tokenizer, text_max_length=config.text_max_length)


def load_pretrained(path: str | Path) -> tuple[MusicClipModel, MusicClipProcessor]:
    read_config(path)
    model = MusicClipModel.from_pretrained(path)
    # Parts loaded by class: `MusicClipProcessor.from_pretrained` goes through AutoFeatureExtractor, which asks
    # for trust_remote_code even though the class is importable here.
    fe = MusicClipFeatureExtractor.from_pretrained(path)
    # The text config tells AutoTokenizer the class; without it, it reads config.json and asks about remote code.
    tokenizer = AutoTokenizer.from_pretrained(path, config=model.config.text_config)
    return model, MusicClipProcessor(fe, tokenizer, text_max_length=model.config.text_max_length)


def load_classifier(path: str | Path) -> tuple[MusicClipForAudioClassification, MusicClipFeatureExtractor]:
    """A finetuned classifier folder and its feature extractor (by class: no remote-code question)."""
    read_config(path)
    model = MusicClipForAudioClassification.from_pretrained(path)
    return model, MusicClipFeatureExtractor.from_pretrained(path)


def load_classifier_init(
    init: str, id2label: dict[int, str], window_samples: int, mel_stats: tuple[list[float], list[float]]
) -> tuple[MusicClipForAudioClassification, MusicClipFeatureExtractor]:
    """The classifier from a pretrained folder's audio side, or from scratch (`init="none"`: thesis baseline)."""
    label2id = {name: i for i, name in id2label.items()}
    if init == "none":
        config = MusicClipConfig(
            window_samples=window_samples, num_labels=len(id2label), id2label=id2label, label2id=label2id
        )
        fe = MusicClipFeatureExtractor.from_model_config(config, mel_mean=mel_stats[0], mel_std=mel_stats[1])
        return MusicClipForAudioClassification(config), fe
    read_config(init)
    # The new head is "missing" from the checkpoint by design: keep transformers' load report out of the sweep's log.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = MusicClipForAudioClassification.from_pretrained(
            init, num_labels=len(id2label), id2label=id2label, label2id=label2id
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    fe = MusicClipFeatureExtractor.from_pretrained(init)
    return model, fe


def save_folder(model, directory: str | Path, processor=None, feature_extractor=None) -> None:
    """`save_pretrained` of the model plus its processor (which also writes preprocessor_config.json)."""
    directory = Path(directory)
    model.save_pretrained(directory)
    if processor is not None:
        processor.save_pretrained(directory)
    elif feature_extractor is not None:
        MusicClipFeatureExtractor(**feature_extractor.to_dict()).save_pretrained(directory)
