"""Stages 6 and 7, card and push: the dataset card (the build's commit point) and the upload to the Hub."""

from __future__ import annotations

import argparse
from itertools import chain
from pathlib import Path

from music_clip_common.files import atomic_write_text
from music_clip_data.captioning import CaptionSettings
from music_clip_data.card import CardInfo, SourceInfo, redacted_command, render_card
from music_clip_data.prompts import PROMPTS
from music_clip_data.sources import SourceRun
from music_clip_data.writer import dataset_info_yaml, remove_stale_files

from .context import BuildContext
from .summary import BuildSummary
from .write_stage import Written

LOCK_NAMES = [".build.lock", ".build.lock.holder"]  # the builder's lock and its holder note: never published
LIMITS = [
    "Audio is stored as 16 kHz mono FLAC (what the model hears), not the original files.",
    "Captions are pseudo-captions (LLM) or metadata templates; none were checked by a person.",
    "Genre labels from tags follow a majority heuristic over noisy tags (thesis Table 2).",
    "Test-split scores on small classes (few groups) have high variance.",
]


def card_info(
    ctx: BuildContext, run: SourceRun, summary: BuildSummary, caption_settings: CaptionSettings | None
) -> CardInfo:
    args, fe, genre_names = ctx.args, ctx.fe, summary.genre_names
    section = run.card_section() if run.card_section else ""
    prompt_name = args.prompt if args.prompt in ("thesis", "lyrics-comment") else "custom"
    prompt_text = PROMPTS.get(args.prompt, args.prompt)
    licence = run.licence.lower()
    train, test = summary.clips_per_class_and_split["train"], summary.clips_per_class_and_split["test"]
    splits = {
        "captions": ["train"] if summary.captions_rows else [],
        "genres": [name for name, counts in (("train", train), ("test", test)) if sum(counts.values())],
    }
    return CardInfo(
        summary=summary,
        splits=splits,
        pretty_name=f"MusicCLIP dataset ({run.name})",
        license_id="mit" if licence.startswith("mit") else "other",
        license_name=None if licence.startswith("mit") else f"musicclip-{run.name}-sources",
        sources=[SourceInfo(run.name, run.description, run.licence, section)],
        genre_names=genre_names,
        main_genres=args.main_genres,
        caption_prompt=prompt_text,
        caption_prompt_name=prompt_name,
        caption_model=args.llm_model if args.llm_base_url else None,
        caption_temperature=getattr(caption_settings, "temperature", None),
        command=redacted_command("build_dataset.py", args.argv),
        split_rule=split_rule(args),
        feature_extractor=f"{type(fe).__name__}(n_mels={fe.feature_size}, sr={fe.sampling_rate}, "
        f"hop={getattr(fe, 'hop_length', '?')}, n_fft={getattr(fe, 'n_fft', '?')})",
        num_proc=args.num_proc,
        limits=LIMITS,
    )


def split_rule(args: argparse.Namespace) -> str:
    return (
        f"groups without a role from the source: {args.captions_fraction:.0%} of each class' groups → "
        f"captions (sklearn GroupShuffleSplit, seed {args.seed}), unlabelled → captions; genres test split: "
        f"sklearn StratifiedGroupKFold fold 0 (seed {args.seed}, test size {args.test_size}); classes with one "
        "group stay in train."
        + (
            f" Clips: each track cut into {args.clips.seconds:g}-s clips every {args.clips.hop:g} s"
            + (f" (at most {args.clips.max_per_track} per track)" if args.clips.max_per_track else "")
            + "; a clip keeps its track's group, so no track has clips on both sides of any split."
            if args.clips
            else ""
        )
    )


def write_card(ctx: BuildContext, info: CardInfo, written: Written) -> None:
    """The commit point: the card names this build's exact shards; only then do the old ones go."""
    output = ctx.output
    info.dataset_info = [dataset_info_yaml(n, written.features[n], written.shards[n]) for n in written.shards]
    info.shard_files = {
        name: {split: [p.relative_to(output).as_posix() for p in paths] for split, paths in splits.items()}
        for name, splits in written.shards.items()
    }
    atomic_write_text(output / "README.md", str(render_card(info)))
    remove_stale_files(
        [output / name for name in written.shards],
        [p for s in written.shards.values() for p in chain(*s.values())],
    )


def published_files(output: Path) -> list[str]:
    """What `--push-to-hub` uploads: the card, the shards its `configs:` name and the feature extractor. Not the
    local reports (`skipped.jsonl` and `build_summary.json` name local paths), the cache, the lock or temp files."""
    from huggingface_hub import DatasetCard

    configs = DatasetCard.load(output / "README.md").data.to_dict().get("configs", [])
    patterns = [path for c in configs for files in c["data_files"] for path in _as_list(files["path"])]
    shards = sorted({p.relative_to(output).as_posix() for pattern in patterns for p in output.glob(pattern)})
    extractor = sorted(  # its config and the code module its `auto_map` names
        p.relative_to(output).as_posix() for p in (output / "feature_extractor").rglob("*") if p.is_file()
    )
    return ["README.md", *shards, *extractor]


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def push(output: Path, repo_id: str) -> None:
    """Upload the published files; the token is the Hub's own lookup (HF_TOKEN, else `hf auth login`'s)."""
    from huggingface_hub import HfApi, get_token

    if not get_token():
        raise ValueError("--push-to-hub needs a Hugging Face token: run `hf auth login` or set HF_TOKEN")
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", exist_ok=True)
    api.upload_folder(
        folder_path=str(output),
        repo_id=repo_id,
        repo_type="dataset",
        allow_patterns=published_files(output),  # our own names: no glob characters in them
        # Remote files not uploaded now: the previous push's shards, and what older builders published by mistake.
        delete_patterns=["captions/*.parquet", "genres/*.parquet", "skipped.jsonl", "*.tmp", *LOCK_NAMES],
    )
