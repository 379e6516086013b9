"""Build a MusicCLIP dataset folder (captions + genres configs, stored mels) from a source of music.

    build_dataset.py --source folder --audio-dir my_music/ --output my_ds            # folder-per-genre, no LLM
    build_dataset.py --source manifest --metadata tracks.csv --output my_ds \\
        --llm-base-url http://localhost:8000/v1 --llm-model gpt-3.5-turbo            # any OpenAI-compatible server
    build_dataset.py --source music21 --size small --output out/m21-small            # the bundled corpus

Stages (music_clip_data/build/): collect tracks → decode + log-mel (parallel, cached per file hash) → labels
(thesis Table 2), captions vs genres by group, genres test split → captions (LLM or template, cached) → Parquet →
card → push. An interrupted build re-run reuses the cached mels and captions under `OUTPUT/.cache/`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from music_clip_common.workers import DECODE_TIME_LIMIT_S
from music_clip_data.build import build, refused_for_failed_captions
from music_clip_data.build.context import load_feature_extractor
from music_clip_data.build.shards import build_shard, finish_shards
from music_clip_data.build.summary import BuildSummary, format_summary
from music_clip_data.captioning import CaptioningError
from music_clip_data.clips import ClipSettings
from music_clip_data.decode import DecodeSettings
from music_clip_data.genres import THESIS_MAIN_GENRES
from music_clip_data.sources import DEFAULT_SOURCE, SOURCES

__all__ = ["BuildSummary", "build", "load_feature_extractor", "main", "parse_args"]

EXIT_FAILED_CAPTIONS = 3  # the dataset was written, with gaps the user did not accept


def _add_input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--source",
        choices=sorted(SOURCES),
        help=f"where the music comes from (default: manifest with --metadata, folder with --audio-dir, "
        f"else {DEFAULT_SOURCE})",
    )
    p.add_argument("--size", choices=["small", "quick", "full"], default="small", help="music21/debian size")
    p.add_argument("--packages", nargs="+", help="debian source: only these packages of its manifest")
    part_help = "debian source: the packages for pretraining, or those held out for the real-music evaluation"
    p.add_argument("--debian-part", choices=["all", "pretrain", "heldout"], default="all", help=part_help)
    label_help = "debian source: label each track by its package (genres config = soundtrack identification)"
    p.add_argument("--label-by-package", action="store_true", help=label_help)
    p.add_argument("--audio-dir", type=Path, help="folder of audio (folder source: one sub-folder per genre)")
    p.add_argument("--metadata", type=Path, help="manifest tracks.csv or tracks.jsonl (manifest source)")
    p.add_argument("--output", type=Path, required=True, help="dataset folder to write")
    p.add_argument("--cache-dir", type=Path, help="resumable work (mels, captions); default OUTPUT/.cache")
    p.add_argument("--feature-extractor", help="folder with preprocessor_config.json (default: the model's)")
    p.add_argument(
        "--shard",
        metavar="I/K",
        type=parse_shard,
        help="build only part I of K (0 <= I < K; whole groups, by a stable hash) into OUTPUT; K shards may run "
        "side by side, on one machine or many sharing OUTPUT; then run the same command with --finish K",
    )
    p.add_argument(
        "--finish",
        metavar="K",
        type=int,
        help="join the K finished shards: roles, test split, Parquet, card (refused if a part is missing)",
    )


def _add_caption_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--llm-base-url", help="OpenAI-compatible endpoint; none = template captions")
    p.add_argument("--llm-model", default="gpt-3.5-turbo")
    p.add_argument("--llm-api-key-env", default="OPENAI_API_KEY", help="env variable holding the API key")
    p.add_argument("--llm-temperature", type=float, default=None)
    p.add_argument("--llm-concurrency", type=int, default=None)
    p.add_argument("--prompt", default="thesis", help="thesis | lyrics-comment | a template FILE")
    p.add_argument(
        "--max-lyrics-chars",
        type=int,
        default=None,
        help="cut lyrics to this many characters before asking the LLM (a prompt past the model's context "
        "is asked once more with half its lyrics, then recorded as failed)",
    )
    p.add_argument(
        "--allow-failed-captions",
        action="store_true",
        help="accept captions that failed after every retry: exit 0 and push without those tracks",
    )


def _add_split_and_decode_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--main-genres", nargs="+", default=list(THESIS_MAIN_GENRES), help="thesis Table 2 genres")
    p.add_argument(
        "--captions-fraction", type=float, default=0.5, help="share of unassigned groups → captions"
    )
    p.add_argument("--test-size", type=float, default=0.2, help="genres test split: fraction (<1) or clips")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-proc", type=int, default=os.cpu_count() or 1)
    p.add_argument("--min-seconds", type=float, default=DecodeSettings.min_seconds)
    p.add_argument("--max-seconds", type=float, default=DecodeSettings.max_seconds)
    p.add_argument("--silence-dbfs", type=float, default=DecodeSettings.silence_dbfs)
    p.add_argument(
        "--decode-time-limit",
        type=float,
        default=DECODE_TIME_LIMIT_S,
        help="seconds one file's decode may take in its worker; past it the file is skipped",
    )
    p.add_argument(
        "--retry-skipped",
        action="store_true",
        help="decode again the files whose decode crashed its worker or ran out of time on an earlier run",
    )


def _add_clip_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--clip-seconds",
        type=float,
        help="cut each track into clips of this many seconds (rows keep the track's group); default: one row "
        "per track",
    )
    p.add_argument("--hop-seconds", type=float, help="start a clip every H seconds (default: --clip-seconds)")
    p.add_argument("--max-clips-per-track", type=int, help="at most M clips per track, spread evenly")
    p.add_argument(
        "--push-to-hub",
        metavar="REPO",
        help="upload the folder as a dataset repo (token: HF_TOKEN or `hf auth login`)",
    )


def parse_shard(text: str) -> tuple[int, int]:
    """`I/K` → (I, K), with 0 <= I < K."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard {text!r}: expected I/K, e.g. 0/4") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"--shard {text!r}: I must be in 0..K-1")
    return index, count


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for add in (_add_input_options, _add_caption_options, _add_split_and_decode_options, _add_clip_options):
        add(p)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the card (secrets redacted there)
    if args.source is None:  # `--audio-dir x --metadata y` alone means the user's own music, as in the issue
        args.source = "manifest" if args.metadata else "folder" if args.audio_dir else DEFAULT_SOURCE
    if args.source != "debian" and (args.packages or args.label_by_package or args.debian_part != "all"):
        p.error("--packages, --debian-part and --label-by-package are for --source debian")
    if args.prompt not in ("thesis", "lyrics-comment"):
        prompt_file = Path(args.prompt)
        if not prompt_file.is_file():
            p.error(f"--prompt {args.prompt!r} is neither thesis, lyrics-comment nor a file")
        args.prompt = prompt_file.read_text(encoding="utf-8")
    if args.max_lyrics_chars is not None and args.max_lyrics_chars < 1:
        p.error("--max-lyrics-chars must be a positive number of characters")
    if args.shard and args.finish:
        p.error("--shard builds one part, --finish joins them: give one of the two")
    if args.finish is not None and args.finish < 1:
        p.error("--finish K: K is the number of shards (1 or more)")
    if args.test_size >= 1 and not float(args.test_size).is_integer():
        p.error("--test-size must be a fraction below 1 or a whole number of clips")
    args.clips = None
    if args.clip_seconds is not None:
        if args.source == "music21":
            p.error(
                "--clip-seconds is for whole tracks (folder, manifest, immich); music21 renders its own clips"
            )
        try:
            args.clips = ClipSettings(args.clip_seconds, args.hop_seconds, args.max_clips_per_track)
        except ValueError as err:
            p.error(str(err))
    elif args.hop_seconds is not None or args.max_clips_per_track is not None:
        p.error("--hop-seconds and --max-clips-per-track need --clip-seconds")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.shard:
            part = build_shard(args)
            print(f"shard {part['shard']}: {part['tracks']} tracks, {part['kept']} decoded; when every part is done: "
                  f"the same command with --finish {args.shard[1]} in place of --shard")  # fmt: skip
            return 0
        summary = finish_shards(args) if args.finish else build(args)
    except (
        ValueError,
        CaptioningError,
    ) as err:  # what the user must fix (options, inputs, key, URL): no traceback
        print(f"build_dataset.py: error: {err}", file=sys.stderr)
        print("finished work is cached: fix it and run the same command again", file=sys.stderr)
        return 2
    print(format_summary(summary))
    print(f"wrote {args.output}")
    if refused_for_failed_captions(summary, args):
        reasons = "; ".join(f"{k}: {n}" for k, n in summary.caption_failures_by_reason.items())
        pushed = " and did not push it" if args.push_to_hub else ""
        print(
            f"build_dataset.py: error: {summary.captions['failed']} caption(s) failed ({reasons}); the dataset "
            f"was written without those tracks{pushed}. Re-run the same command to ask again (finished work is "
            "cached), or pass --allow-failed-captions to accept the gaps.",
            file=sys.stderr,
        )
        return EXIT_FAILED_CAPTIONS
    return 0


if __name__ == "__main__":
    sys.exit(main())
