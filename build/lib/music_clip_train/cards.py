"""Model-card text (README.md of a saved folder): what was trained, on what, how, and its limits."""

from __future__ import annotations

import json
from pathlib import Path

from .calibration import reliability_diagram
from .collate import OBJECTIVE_LABELS
from .data import hub_dataset

RELIABILITY_PNG = "reliability.png"

THESIS_CITATION = """```bibtex
@mastersthesis{musicclip_thesis,
  title  = {Multimodal Pretraining for Music Audio: learning audio representations from LLM pseudo-captions},
  note   = {Chapter 4: five pretraining objectives (1-Text, IS, SCL, STL, SMM) and few-shot genre finetuning}
}
```"""

LIMITS = """## Limits
- The audio tower is the thesis' small CNN on log-mels; it is a research baseline, not a general music model.
- Captions are pseudo-captions (LLM answers or templates from metadata, see the dataset card): they describe
  sentiment/theme/genre as text, not what is audible, and can be wrong.
- The bundled demo corpus is small and partly synthetic (rendered MIDI, ACE-Step generated tracks): numbers on it
  say whether the pipeline works, not how the method does on real recordings at the thesis' scale."""


def _front_matter(tags: list[str], pipeline_tag: str, dataset: str) -> str:
    lines = ["---", "library_name: transformers", f"pipeline_tag: {pipeline_tag}", "tags:"]
    lines += [f"- {t}" for t in tags]
    if (hub := hub_dataset(dataset)) is not None:  # a local folder is no Hub dataset to link
        lines += ["datasets:", f"- {hub[0]}"]
    return "\n".join(lines + ["---", ""])


def launch_line(result: dict) -> str:
    """How the run was launched (results written before this record existed say nothing)."""
    launch = result.get("launch")
    if not launch:
        return "not recorded"
    return (
        f"{launch['num_processes']} process(es) × {launch['per_process_batch']} per process"
        f"{' × ' + str(launch['gradient_accumulation_steps']) + ' accumulated' if launch['gradient_accumulation_steps'] > 1 else ''}"
        f" = global batch {launch['global_batch']}; mixed precision {launch['mixed_precision']}; "
        f"BatchNorm statistics {'synced (SyncBatchNorm)' if launch['sync_batchnorm'] else 'per process (rank 0 saved)'}"
    )


def pretrain_card(result: dict) -> str:
    objective = result["objective"]
    last = result["history"][-1] if result["history"] else {}
    text_state = (
        "frozen: the text tower was encoded once and cached; only its v/z projections trained"
        if result["freeze_text"]
        else "trained end to end with the audio side"
    )
    return f"""{
        _front_matter(
            ["music", "audio", "contrastive", "music-clip", objective],
            "zero-shot-audio-classification",
            result["dataset"],
        )
    }
# MusicCLIP ({OBJECTIVE_LABELS[objective]})

Audio CNN + text tower with v/z projections, pretrained with the **{OBJECTIVE_LABELS[objective]}** objective
(`{
        objective
    }`) of the thesis (ch. 4.4). Load with `AutoModel.from_pretrained(folder, trust_remote_code=True)`;
the audio side initialises `MusicClipForAudioClassification` for finetuning (`train.py finetune --init`).

| | |
|---|---|
| data | `{result["dataset"]}` captions config: {result["train_tracks"]} training tracks, {
        result["heldout_tracks"]
    } held out (grouped) |
| text tower | {text_state} |
| steps / epochs | {result["steps"]} / {result["epochs"]} |
| audio window | {result["window_samples"]} samples at 16 kHz ({result["window_samples"] / 16000:.1f} s) |
| last held-out loss | {last.get("heldout_loss")} |
| launch | {launch_line(result)} |
| wall time | {result["wall_seconds"]} s |

Held-out retrieval after the last epoch (recall@k, higher is better):

```json
{json.dumps(last.get("heldout_recall"), indent=2)}
```

Training arguments: `{json.dumps(result["args"])}`
{ood_section(result.get("ood"), "held-out captions tracks")}
{LIMITS}

## Citation
{THESIS_CITATION}
"""


def finetune_card(result: dict) -> str:
    init = result["init"]
    origin = (
        "from scratch (the thesis' un-pretrained Audio Encoder baseline)"
        if init == "none"
        else f"from `{init}`"
    )
    test = result["test"]
    return f"""{
        _front_matter(
            ["music", "audio", "genre-classification", "music-clip"],
            "audio-classification",
            result["dataset"],
        )
    }
# MusicCLIP genre classifier

Audio CNN + v layer + head (thesis 4.3), initialised {origin}, finetuned on {result["n_used"]} examples of the
`{result["dataset"]}` genres config (seed {result["seed"]}; {result["n_fit"]} fit, {
        result["n_val"]
    } validation
carved from the subset for model selection). Head first, audio tower unfrozen at epoch {
        result["unfreeze_epoch"]
    }
with learning rate {result["tower_learning_rate"]}. Load with
`pipeline("audio-classification", model=folder, trust_remote_code=True)`.

| test split ({test["num_examples"]} clips) | value |
|---|---|
| macro-F1 | {test["macro_f1"]:.4f} |
| accuracy | {test["accuracy"]:.4f} |
| best epoch (validation macro-F1) | {result["best_epoch"]} |
| launch | {launch_line(result)} |

Labels: {", ".join(result["labels"])}
{calibration_section(result)}{ood_section(result.get("ood"), "validation part")}
{LIMITS}

## Citation
{THESIS_CITATION}
"""


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


def evaluation_section(scores: dict) -> str:
    return f"""
## Evaluation (`train.py evaluate`)

```json
{json.dumps(scores, indent=2)}
```
"""
