"""The `music-clip` console script.

music-clip index ~/Music --model runs/quick/sweep/pretrained/independent --output ~/music-index
music-clip search ~/music-index "a calm piano piece"
music-clip search ~/music-index --like some_song.mp3 -k 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from music_clip_common.workers import DECODE_TIME_LIMIT_S


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="music-clip", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    index = commands.add_parser("index", help="embed every audio file under DIR into an index folder")
    index.add_argument("audio_dir", type=Path, metavar="DIR")
    index.add_argument(
        "--model", required=True, help="MusicCLIP model folder (pretrained, with its processor)"
    )
    index.add_argument("--output", type=Path, required=True, metavar="IDX", help="index folder to write")
    index.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decode + embed processes")
    index.add_argument(
        "--index-type",
        choices=["auto", "exact", "approx"],
        default="auto",
        help="FAISS index: auto = exact for small libraries, the approximate type beyond",
    )
    index.add_argument(
        "--decode-only", action="store_true", help="benchmark: decode + log-mel only, write nothing"
    )
    index.add_argument(
        "--decode-time-limit",
        type=float,
        default=DECODE_TIME_LIMIT_S,
        help="seconds one file's decode + embedding may take in its worker; past it the file is skipped",
    )
    parts = index.add_mutually_exclusive_group()
    parts.add_argument(
        "--shard",
        metavar="i/K",
        help="index only part i (0-based) of K disjoint parts (by a stable hash of each file's path); run the K "
        "parts anywhere that shares IDX, then the same command with --finish",
    )
    parts.add_argument(
        "--finish", action="store_true", help="merge the K finished parts into the index folder"
    )
    index.add_argument(
        "--retry-skipped",
        action="store_true",
        help="try again the files whose worker died or ran out of time on an earlier run",
    )
    find = commands.add_parser("search", help="ranked tracks of an index folder for a text or an audio file")
    find.add_argument("index", type=Path, metavar="IDX")
    find.add_argument("text", nargs="?", help="what the music sounds like")
    find.add_argument("--like", type=Path, metavar="FILE", help="find tracks that sound like this file")
    find.add_argument("-k", type=int, default=10, help="number of results")
    find.add_argument("--model", help="the model (default: the one the index was built with)")
    find.add_argument("--json", action="store_true", help="print the matches as JSON lines")
    for command in (index, find):
        command.add_argument(
            "--device", help="torch device of the model (default: cuda when available, else cpu)"
        )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "index":
            from .indexer import IndexArgs, index_folder
            from .shards import parse_shard

            summary = index_folder(
                IndexArgs(
                    args.audio_dir,
                    args.model,
                    args.output,
                    args.workers,
                    args.index_type,
                    args.decode_only,
                    args.decode_time_limit or None,
                    args.retry_skipped,
                    args.device,
                    parse_shard(args.shard) if args.shard else None,
                    args.finish,
                )
            )
            if args.decode_only:
                print(json.dumps(summary))
                return 0
            print(index_report(summary, args))
            return 0
        from .search import format_matches, search

        matches = search(
            args.index, text=args.text, like=args.like, k=args.k, model=args.model, device=args.device
        )
        if args.json:
            print("\n".join(json.dumps(m.__dict__) for m in matches))
        else:
            print(format_matches(matches))
        return 0
    except ValueError as err:  # what the user must fix: no traceback
        print(f"music-clip {args.command}: error: {err}", file=sys.stderr)
        return 2


def index_report(summary: dict, args: argparse.Namespace) -> str:
    done = (
        f"{summary['files']} files ({summary['embedded']} embedded, {summary['cached']} from cache), skipped "
    )
    if args.finish:
        return (
            f"merged {summary['parts']} parts: {done}{summary['skipped']}; merge {summary['merge_seconds']} s; "
            f"index {summary['index']['factory']} → {args.output}"
        )
    speed = f"{summary['files_per_s']} files/s, {summary['x_real_time']}x real time"
    if args.shard:
        return (
            f"part {args.shard}: indexed {done}{summary['skipped']}; {speed}; then --finish merges the parts"
        )
    return f"indexed {done}{summary['skipped']}; {speed}; index {summary['index']['factory']} → {args.output}"


if __name__ == "__main__":
    sys.exit(main())
