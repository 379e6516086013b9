"""The dataset card: README.md with the YAML `configs:` list `load_dataset(folder, name)` reads, plus the facts a
user needs (sources and licences, prompt and model, counts per genre and split, how it was built, known limits).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from huggingface_hub import DatasetCard, DatasetCardData

from music_clip_data import genres as genre_rules
from music_clip_data.decode import __doc__ as DECODE_RULES  # noqa: N812 - the rules, stated once

if TYPE_CHECKING:
    from music_clip_data.build.summary import BuildSummary

SECRET_OPTION = re.compile(r"key|token|secret|passw", re.IGNORECASE)
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
HIDDEN = "***"


def redact_url(value: str) -> str:
    """A URL without its secrets: user:password@ and every query value (API keys ride there) become ***."""
    parts = urlsplit(value)
    if not parts.scheme or not parts.netloc:
        return value
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{HIDDEN}@{host}" if "@" in parts.netloc else host
    query = urlencode([(k, HIDDEN) for k, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_value(option: str, value: str) -> str:
    if SECRET_OPTION.search(option) and not (option.endswith("-env") and ENV_NAME.fullmatch(value)):
        return HIDDEN  # `--llm-api-key-env NAME` names a variable: kept; anything else key-like is hidden
    return redact_url(value)


def redacted_command(program: str, argv: list[str]) -> str:
    """The command line for the card, with secrets hidden: any `--*key*`/`--*token*`/`--*secret*` value and
    the userinfo and query values of any URL (e.g. `--llm-base-url`)."""
    out: list[str] = []
    option = ""
    for arg in argv:
        if arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
            out.append(f"{name}={_redact_value(name, value)}")
            option = ""
        elif arg.startswith("-"):
            out.append(arg)
            option = arg
        else:
            out.append(_redact_value(option, arg))
    return " ".join([program, *(shlex.quote(a) for a in out)])


# The Hub's size buckets (dataset card `size_categories`): upper bounds in rows.
SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M")]  # fmt: skip


@dataclass
class SourceInfo:
    name: str
    description: str
    licence: str  # the licence in words
    card_section: str = ""


@dataclass
class CardInfo:
    """Everything the dataset card states, from the builder (`music_clip_data.build.publish.card_info`)."""

    summary: BuildSummary
    splits: dict[str, list[str]]  # config → its non-empty splits
    pretty_name: str
    license_id: str  # a Hub licence id, or "other" (then `license_name` names it)
    license_name: str | None
    sources: list[SourceInfo]
    genre_names: list[str]
    main_genres: list[str]
    caption_prompt: str
    caption_prompt_name: str
    caption_model: str | None
    caption_temperature: float | None
    command: str
    split_rule: str
    feature_extractor: str
    num_proc: int
    limits: list[str]
    labels_from_tags: int = 0
    dataset_info: list[dict] = field(default_factory=list)
    shard_files: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # config → split → files
    language: list[str] = field(default_factory=lambda: ["en"])  # captions, titles and tags


def size_category(rows: int) -> str:
    return next((name for bound, name in SIZE_CATEGORIES if rows < bound), "n>10M")


def _data_files(info: CardInfo, name: str, split: str) -> str | list[str]:
    """The exact shard files of this build when the builder lists them (the card is the commit point: a
    killed rebuild's new shards are not read under the old card), else every shard of the split."""
    files = info.shard_files.get(name, {}).get(split)
    return list(files) if files else f"{name}/{split}-*.parquet"


def yaml_header(info: CardInfo) -> str:
    configs = [
        {
            "config_name": name,
            "data_files": [{"split": split, "path": _data_files(info, name, split)} for split in splits],
        }
        for name, splits in info.splits.items()
        if splits
    ]
    licence_name = (
        {"license_name": info.license_name} if info.license_id == "other" and info.license_name else {}
    )
    data = DatasetCardData(
        configs=configs,
        dataset_info=[i for i in info.dataset_info if i.get("splits")],
        language=info.language,
        license=info.license_id,
        size_categories=[size_category(info.summary.kept)],
        task_categories=["audio-classification", "text-to-audio"],
        tags=["music", "audio", "captions", "music-clip", *(s.name for s in info.sources)],
        pretty_name=info.pretty_name,
        **licence_name,
    )
    return "---\n" + data.to_yaml() + "\n---\n"


def _table(rows: list[list[Any]], head: list[str]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _label_rule(info: CardInfo) -> str:
    if not info.labels_from_tags:
        return "- Genre labels: given by the source (folder name, mood, style class)."
    return (
        f"- Genre labels: a label given by the source wins; otherwise raw tags are mapped to the main genres "
        f"{json.dumps(info.main_genres)} by the thesis' Table 2 majority rule "
        f"({info.labels_from_tags} tracks):\n\n```\n{(genre_rules.__doc__ or '').strip()}\n```\n\n"
        "  Tracks with no main genre are excluded from `genres` (they may still serve `captions`, as in the "
        f"thesis) and counted: {info.summary.no_main_genre}."
    )


def _counts_section(info: CardInfo) -> list[str]:
    """The card from its title to the counts: what the two configs are, rows per genre and split, skips."""
    summary = info.summary
    genre_names: list[str] = info.genre_names
    per_split = summary.clips_per_class_and_split
    genre_rows = [[g, per_split["train"].get(g, 0), per_split["test"].get(g, 0)] for g in genre_names]
    genre_rows.append(["**total**", sum(per_split["train"].values()), sum(per_split["test"].values())])
    captions = summary.captions
    parts = [
        f"# {info.pretty_name}\n",
        "Music audio with stored log-mel spectrograms in two disjoint configs, built with MusicCLIP's "
        "`build_dataset.py` for the thesis' protocol (pretrain on captions, finetune on few genre labels):\n",
        "- `captions`: audio + three caption sentences per track (sentiment, theme, sentiment + genre), "
        "for contrastive pretraining.",
        "- `genres`: audio + one `genre` label per track (`ClassLabel`), with a fixed `test` split.\n",
        "The two configs never share a track or a group (`group_id`).\n",
        "```python\nfrom datasets import load_dataset\n"
        'caps = load_dataset("<this folder or repo>", "captions")\n'
        'gens = load_dataset("<this folder or repo>", "genres")\n```\n',
        "## Counts\n",
        f"Tracks in: {summary.tracks_in}; kept: {summary.kept} "
        f"(captions {summary.captions_rows}, genres {summary.genres_rows}); "
        f"skipped: {summary.skipped} (each with its reason in the build folder's `skipped.jsonl`, which stays "
        "local: it names local paths).\n",
        _table(genre_rows, ["genre", "train", "test"]) + "\n",
        "Captions in this build: "
        + ", ".join(f"{k} {v}" for k, v in captions.items())
        + " (new / cached: LLM answers asked now / read from the answer cache; `caption_source` column: "
        "llm / template / human).\n",
    ]
    if summary.skipped_by_reason:
        reason_rows = [[k, v] for k, v in summary.skipped_by_reason.items()]
        parts.append(_table(reason_rows, ["skipped because", "count"]) + "\n")
    empty = [
        f"`{n}`" + (f" split `{sp}`" if n == "genres" else "")
        for n, sp in (("captions", "train"), ("genres", "train"), ("genres", "test"))
        if sp not in info.splits.get(n, [])
    ]
    if empty:
        parts.append(
            "**Empty (left out of `configs:`, `datasets` cannot load an empty split):** "
            + ", ".join(empty)
            + "\n"
        )
    return parts


def render_card(info: CardInfo) -> DatasetCard:
    """The card of one build (`info` from `music_clip_data.build.publish.card_info`)."""
    parts = [yaml_header(info), *_counts_section(info)]
    parts += [
        "## Sources and licences\n",
        _table(
            [[s.name, s.description, s.licence] for s in info.sources],
            ["source", "what", "licence"],
        )
        + "\n",
    ]
    parts += [s.card_section + "\n" for s in info.sources if s.card_section]
    parts += [
        "## Columns\n",
        "Both configs: `track_id`, `group_id` (piece or work family; splits never cut a group), `source`, "
        "`audio` (16 kHz mono FLAC, playable), `mel` (`(mel_length, n_mels)` float32, time-major "
        "`log(1 + power mel)` from the feature extractor in `feature_extractor/`), `mel_length`, `duration_s`, "
        "`title`, `artist`, `tags` (raw genre tags), `lyrics`, `metadata` (JSON of source extras), and audio "
        "descriptors measured on the row's own audio: `tempo_bpm`, `key` (e.g. `A minor`), `loudness_lufs` "
        "(EBU R128), `dynamic_range_db` (EBU loudness range), `brightness_hz` (spectral centroid), `onset_rate` "
        "(onsets per second); null where not measurable.\n",
        "`captions` adds `caption` (the sentences joined), `sentences` (3), `caption_source`, `caption_prompt`, "
        "`caption_model`, `caption_temperature`, `caption_raw` (the model's raw answer). `genres` adds `genre`.\n",
        "## Captions\n",
        f"- Endpoint model: `{info.caption_model or 'none (template captions)'}`; temperature: "
        f"{info.caption_temperature}.",
        f"- Prompt (`{info.caption_prompt_name}`):\n\n```\n{info.caption_prompt}\n```\n",
        "Without an endpoint, and for tracks without lyrics (the prompt would ask about nothing), captions are "
        "written from each track's real metadata by template and marked "
        '`caption_source = template`; the descriptors add words such as "fast", "bright", "loud". Title, '
        "artist, album, date and the descriptors go to the LLM in one line before the lyrics. LLM answers are "
        "split into sentences with pysbd; answers that are not three sentences are asked again, then listed as failed in `skipped.jsonl` with the raw answer.\n",
        "## How it was built\n",
        f"```\n{info.command}\n```\n",
        _label_rule(info),
        f"- Split: {info.split_rule}",
        "- Decoding and clip rules:\n\n```\n" + (DECODE_RULES or "").strip() + "\n```\n",
        f"- Feature extractor: `{info.feature_extractor}` (saved in `feature_extractor/`).",
        f"- Build time: {info.summary.timings_s.get('total', 0):.0f} s with {info.num_proc} process(es).\n",
        "## Known limits\n",
    ]
    parts += [f"- {limit}" for limit in info.limits]
    return DatasetCard("\n".join(parts) + "\n")
