"""Retrieval (text→music, music→text) on held-out captions and zero-shot genre classification.

Scores are the model's own `similarity` (the one `forward` uses): cosine similarity of z embeddings for the
contrastive and triplet objectives, the matching head's logits for SMM.
"""

from __future__ import annotations

import numpy as np
import torch

from .collate import flat_texts, texts_per_track
from .data import CaptionData, GenreSplit
from .metric_modules import classification_scores, retrieval_scores

ZERO_SHOT_TEMPLATE = "This is a sound of {}."  # the zero-shot-audio-classification pipeline's default prompt


@torch.no_grad()
def audio_embeddings(model, mels: list[np.ndarray], feature_extractor, batch_size: int = 32) -> torch.Tensor:
    device = next(model.parameters()).device
    chunks = []
    for start in range(0, len(mels), batch_size):
        inputs = feature_extractor.window(mels[start : start + batch_size])
        chunks.append(
            model.get_audio_features(inputs["input_features"].to(device), inputs["window_mask"].to(device))
        )
    return torch.cat(chunks)


@torch.no_grad()
def pooled_texts(model, texts: list[str], tokenizer, max_length: int, batch_size: int = 64) -> torch.Tensor:
    """Text-tower outputs before the v layer (the frozen-text cache and the evaluation path share this).

    Each distinct text is encoded once, in batches of similar length: template captions repeat (the quick build's
    15,945 sentences are 3,881 distinct ones), and short batches pad less. A text's vector depends only on the
    set of texts, not on their order.
    """
    device = next(model.parameters()).device
    unique = sorted(set(texts), key=lambda text: (len(text), text))
    chunks = []
    for start in range(0, len(unique), batch_size):
        tokens = tokenizer(
            unique[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(device)
        chunks.append(model.get_text_pooled(tokens["input_ids"], tokens["attention_mask"]))
    row = {text: i for i, text in enumerate(unique)}
    return torch.cat(chunks)[torch.tensor([row[text] for text in texts], dtype=torch.long)]


@torch.no_grad()
def retrieval(
    model,
    data: CaptionData,
    feature_extractor,
    tokenizer,
    objective: str | None = None,
    pooled: torch.Tensor | None = None,
    audio_z: torch.Tensor | None = None,
) -> dict:
    """R@1/5/10, mAP@10 and median rank in both directions; texts are the objective's training texts."""
    was_training = model.training
    model.eval()
    objective = objective or model.config.objective
    per_track = texts_per_track(objective)
    if pooled is None:
        pooled = pooled_texts(model, flat_texts(data, objective), tokenizer, model.config.text_max_length)
    text_z = model.get_text_features_from_pooled(pooled)
    if audio_z is None:
        audio_z = audio_embeddings(model, data.mels, feature_extractor)
    scores = model.similarity(audio_z, text_z).cpu().numpy()
    text_track = np.repeat(np.arange(len(data)), per_track)
    text_to_music = retrieval_scores(scores.T, [[int(t)] for t in text_track])
    music_to_text = retrieval_scores(
        scores, [list(range(i * per_track, (i + 1) * per_track)) for i in range(len(data))]
    )
    model.train(was_training)
    return {
        "text_to_music": text_to_music,
        "music_to_text": music_to_text,
        "texts": "caption" if per_track == 1 else "sentences",
    }


@torch.no_grad()
def zero_shot(
    model,
    split: GenreSplit,
    label_names: list[str],
    feature_extractor,
    tokenizer,
    template: str = ZERO_SHOT_TEMPLATE,
) -> dict:
    """Genre = the label prompt with the highest score for each test clip."""
    model.eval()
    # Label ids such as `baroque_chorale` read as words to the text tower only without the underscores.
    prompts = [template.format(name.replace("_", " ")) for name in label_names]
    pooled = pooled_texts(model, prompts, tokenizer, model.config.text_max_length)
    text_z = model.get_text_features_from_pooled(pooled)
    audio_z = audio_embeddings(model, split.mels, feature_extractor)
    predictions = model.similarity(audio_z, text_z).argmax(1).cpu().numpy()
    scores = classification_scores(predictions, split.labels, len(label_names))
    return {**scores, "prompts": prompts, "template": template}
