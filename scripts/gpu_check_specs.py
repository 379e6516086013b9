"""The GPU check's two training stages as `music_clip_train.loop.TrainingSpec`s over in-memory tensors.

Imports only the loop and the Hub model files (torch, transformers, accelerate, huggingface_hub, numpy, soxr): no
`datasets`, torchaudio, scikit-learn or matplotlib, which the GPU machines do not have.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from configuration_music_clip import MusicClipConfig
from modeling_music_clip import MusicClipForAudioClassification, MusicClipModel
from music_clip_train import launch, loop
from music_clip_train.sampler import EpochBatchSampler

TINY_BERT = {  # random weights: captions are token ids that name the label (see gpu_check.tensors)
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
    "max_position_embeddings": 64,
}
HOLDOUT = 0.25  # the last quarter of the clips: held out for every stage's evaluation


@dataclass(kw_only=True)
class CheckArgs(launch.LaunchArgs):
    output: str
    init: str | None = None
    frames: int = 235
    seed: int = 0
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 1e-3
    tower_learning_rate: float = 1e-4
    resume: bool = False
    checkpoint_every: int = 0


def check_config(frames: int, **overrides) -> MusicClipConfig:
    return MusicClipConfig(
        text_config=dict(TINY_BERT),
        text_model_name_or_path="tiny-random-bert",
        window_samples=(frames - 1) * 1024,  # hop 1024: `frames` frames per window
        projection_hidden_size=256,
        projection_dim=128,
        classifier_hidden_size=64,
        objective="ntxent",
        **overrides,
    )


class CheckSpec(loop.TrainingSpec):
    """Shared by both stages: the split, the loader, and the final evaluation's timing."""

    results_name = "results.json"

    def __init__(self, args: CheckArgs, data) -> None:
        super().__init__(args)
        self.data = data
        cut = int(len(data.labels) * (1 - HOLDOUT))
        self.train, self.held = np.arange(cut), np.arange(cut, len(data.labels))

    def loader(self, accelerator) -> tuple[DataLoader, EpochBatchSampler]:
        args = self.args
        sampler = EpochBatchSampler(
            len(self.train), args.batch_size, args.seed, num_replicas=accelerator.num_processes,
            rank=accelerator.process_index,
        )  # fmt: skip
        loader = DataLoader(
            list(range(len(self.train))),
            batch_sampler=sampler,
            collate_fn=lambda rows: self.data.rows(torch.as_tensor(self.train[rows])),
            **launch.loader_options(args, accelerator.device),
        )
        return loader, sampler

    def held_batches(self, size: int = 64):
        for start in range(0, len(self.held), size):
            rows = self.data.rows(torch.as_tensor(self.held[start : start + size]))
            yield loop.to_device(rows, self.accelerator.device)

    def timed(self, model, score) -> dict:
        """`score(model)` over the held-out clips in the run's precision, with its throughput."""
        model.eval()
        if self.accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        with torch.no_grad(), self.accelerator.autocast():
            scores = score(model)
        if self.accelerator.device.type == "cuda":
            torch.cuda.synchronize()
        return {**scores, "samples_per_second": len(self.held) / (time.perf_counter() - started)}

    def evaluate(self, model, progress, epoch: int, losses: list[float]) -> dict:
        return {"epoch": epoch, "train_loss": float(np.mean(losses))}

    def result(self, model, progress) -> dict:
        return {"history": progress.history, "eval": self.timed(model, self.score)}

    def publication(self, model, result: dict) -> loop.Publication:
        return loop.Publication(Path(self.args.output), result, self.results_name)

    def saved(self, folder: Path) -> bool:
        return True


class PretrainCheck(CheckSpec):
    def setup(self, accelerator) -> loop.Parts:
        model = MusicClipModel(check_config(self.args.frames)).to(accelerator.device)
        model.freeze_unused_heads()
        model.text_model.pooler.requires_grad_(False)  # as `train.py pretrain` does: never read
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=self.args.learning_rate)
        loader, sampler = self.loader(accelerator)
        return loop.Parts(model, optimizer, loader, sampler, self.args.epochs)

    @staticmethod
    def text_batch(batch: dict) -> dict:
        ids = batch.pop("input_ids")
        batch.pop("labels")
        rows = torch.arange(len(ids), device=ids.device)
        return {**batch, "input_ids": ids, "attention_mask": torch.ones_like(ids), "text_audio_index": rows}

    def loss(self, model, batch: dict) -> torch.Tensor:
        return model(**self.text_batch(batch), return_loss=True).loss

    def score(self, model) -> dict:
        audio, text = [], []
        for batch in self.held_batches():
            batch = self.text_batch(batch)
            audio.append(model.get_audio_features(batch["input_features"], batch["window_mask"]).float())
            text.append(model.get_text_features(batch["input_ids"], batch["attention_mask"]).float())
        similarity = model.similarity(torch.cat(audio), torch.cat(text))
        hits = similarity.argmax(1) == torch.arange(len(similarity), device=similarity.device)
        return {"recall@1": hits.float().mean().item()}

    def before_publish(self, model, result: dict) -> None:
        if self.accelerator.is_main_process:
            model.save_pretrained(self.args.output)  # the finetuning stage starts from it


class FinetuneCheck(CheckSpec):
    """Head first, the audio tower unfrozen from the second epoch on (finetuning's schedule, shortened)."""

    def setup(self, accelerator) -> loop.Parts:
        labels = int(self.data.labels.max()) + 1
        names = {i: f"label{i}" for i in range(labels)}
        model = MusicClipForAudioClassification.from_pretrained(
            self.args.init, num_labels=labels, id2label=names, label2id={v: k for k, v in names.items()}
        ).to(accelerator.device)
        tower = {id(p) for p in model.audio_tower_parameters()}
        head = [p for p in model.parameters() if id(p) not in tower]
        optimizer = torch.optim.AdamW(
            [
                {"params": head, "lr": self.args.learning_rate},
                {"params": model.audio_tower_parameters(), "lr": self.args.tower_learning_rate},
            ]
        )
        loader, sampler = self.loader(accelerator)
        return loop.Parts(model, optimizer, loader, sampler, self.args.epochs)

    def start_epoch(self, model, epoch: int) -> None:
        model.unfreeze_audio_encoder() if epoch >= 1 else model.freeze_audio_encoder()

    def loss(self, model, batch: dict) -> torch.Tensor:
        batch.pop("input_ids")
        return model(**batch).loss

    def score(self, model) -> dict:
        right = 0
        for batch in self.held_batches():
            logits = model(input_features=batch["input_features"], window_mask=batch["window_mask"]).logits
            right += (logits.argmax(1) == batch["labels"]).sum().item()
        return {"accuracy": right / len(self.held)}


def run_stage(spec_class, data, out: Path, precision: str, epochs: int, frames: int, init=None) -> dict:
    args = CheckArgs(
        output=str(out),
        mixed_precision=precision,
        epochs=epochs,
        frames=frames,
        init=str(init) if init else None,
    )
    return loop.run(spec_class(args, data))
