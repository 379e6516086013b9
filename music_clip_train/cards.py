"""Model-card text (README.md of a saved folder): what was trained, on what, how, and its limits."""

from __future__ import annotations

import json

from .collate import OBJECTIVE_LABELS
from .data import hub_dataset

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
| wall time | {result["wall_seconds"]} s |

Held-out retrieval after the last epoch (recall@k, higher is better):

```json
{json.dumps(last.get("heldout_recall"), indent=2)}
```

Training arguments: `{json.dumps(result["args"])}`

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

Labels: {", ".join(result["labels"])}

{LIMITS}

## Citation
{THESIS_CITATION}
"""


def evaluation_section(scores: dict) -> str:
    return f"""
## Evaluation (`train.py evaluate`)

```json
{json.dumps(scores, indent=2)}
```
"""
