"""Build a MusicCLIP dataset folder (captions + genres configs, stored mels) from a source of music.

    build_dataset.py --source folder --audio-dir my_music/ --output my_ds            # folder-per-genre, no LLM
    build_dataset.py --source manifest --metadata tracks.csv --output my_ds \\
        --llm-base-url http://localhost:8000/v1 --llm-model gpt-3.5-turbo            # any OpenAI-compatible server
    build_dataset.py --source music21 --size small --output out/m21-small            # the bundled corpus

Steps: collect tracks → decode + log-mel (parallel, cached per file hash) → labels (thesis Table 2) → captions
vs genres by group → genres test split → captions (LLM or template, cached) → Parquet + card + reports.
An interrupted build re-run reuses the cached mels and captions under `OUTPUT/.cache/`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from music_clip_common.workers import (
    DECODE_TIME_LIMIT_S,
    record_failure,
    run_in_workers,
    split_known_failures,
)
from music_clip_data.captioning import CaptioningError, CaptionInput, CaptionSettings, caption_many
from music_clip_data.card import redacted_command, render_card
from music_clip_data.clips import ClipSettings, clip_id, clip_spans, cut_clips
from music_clip_data.decode import (
    DecodeSettings,
    decode_status,
    failed_status,
    load_cached,
    remove_stale_temps,
    single_thread_worker,
)
from music_clip_data.descriptors import describe_flac
from music_clip_data.files import LOCK_NAME, atomic_write_text, folder_lock, unique_token
from music_clip_data.genres import THESIS_MAIN_GENRES, map_to_main_genre
from music_clip_data.prompts import PROMPTS
from music_clip_data.sources import DEFAULT_SOURCE, SOURCES, SourceOptions, SourceRun, open_source
from music_clip_data.track import Track
from music_clip_data.writer import (
    ATTRIBUTION_COLUMNS,
    captions_features,
    dataset_info_yaml,
    genres_features,
    remove_stale_files,
    split_roles,
    test_mask,
    write_split,
)

CACHE_DIR_NAME = ".cache"
EXIT_FAILED_CAPTIONS = 3  # the dataset was written, with gaps the user did not accept


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--source",
        choices=sorted(SOURCES),
        help=f"where the music comes from (default: manifest with --metadata, folder with --audio-dir, "
        f"else {DEFAULT_SOURCE})",
    )
    p.add_argument("--size", choices=["small", "quick", "full"], default="small", help="music21/debian size")
    p.add_argument("--packages", nargs="+", help="debian source: only these packages of its manifest")
    p.add_argument(
        "--debian-part",
        choices=["all", "pretrain", "heldout"],
        default="all",
        help="debian source: the packages for pretraining, or those held out for the real-music evaluation",
    )
    p.add_argument(
        "--label-by-package",
        action="store_true",
        help="debian source: label each track by its package (genres config = soundtrack identification)",
    )
    p.add_argument("--audio-dir", type=Path, help="folder of audio (folder source: one sub-folder per genre)")
    p.add_argument("--metadata", type=Path, help="manifest tracks.csv or tracks.jsonl (manifest source)")
    p.add_argument("--output", type=Path, required=True, help="dataset folder to write")
    p.add_argument("--cache-dir", type=Path, help="resumable work (mels, captions); default OUTPUT/.cache")
    p.add_argument("--feature-extractor", help="folder with preprocessor_config.json (default: the model's)")
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
    p.add_argument(
        "--clip-seconds",
        type=float,
        help="cut each track into clips of this many seconds (rows keep the track's group); default: one row "
        "per track",
    )
    p.add_argument("--hop-seconds", type=float, help="start a clip every H seconds (default: --clip-seconds)")
    p.add_argument("--max-clips-per-track", type=int, help="at most M clips per track, spread evenly")
    p.add_argument(
        "--push-to-hub", metavar="REPO", help="upload the folder as a dataset repo (token: HF_TOKEN)"
    )
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


def load_feature_extractor(path: str | None) -> Any:
    from feature_extraction_music_clip import MusicClipFeatureExtractor

    if path and not Path(path).is_dir():  # else from_pretrained would look for it on the Hub
        raise ValueError(f"--feature-extractor {path}: not found (a folder with preprocessor_config.json)")
    return MusicClipFeatureExtractor.from_pretrained(path) if path else MusicClipFeatureExtractor()


def decode_all(
    tracks: list[Track], fe: Any, settings: DecodeSettings, cache_dir: Path, args: argparse.Namespace
) -> list[dict]:
    """Decode + log-mel every track (cached per file hash); one small status dict per track, in order.

    Under the one worker policy (`music_clip_common.workers`, with `--num-proc` 1 too): each file is decoded in
    a worker process under `--decode-time-limit`; a file whose decode kills its worker or runs past the limit
    is skipped with that reason, the build goes on, and the failure is recorded so that later runs skip it
    without paying again, unless `--retry-skipped`.
    """
    if cache_dir.is_dir():
        remove_stale_temps(cache_dir)
    paths = {i: str(track.audio_path) for i, track in enumerate(tracks)}
    rules = asdict(settings)
    todo, known = split_known_failures(paths, cache_dir, rules, args.retry_skipped)
    results: list[dict | None] = [None] * len(tracks)
    for i, reason in known.items():
        results[i] = failed_status(reason)
    jobs = {i: (paths[i], fe, settings, str(cache_dir)) for i in todo}
    num_proc = max(1, min(args.num_proc, len(todo)))
    bar = tqdm(total=len(tracks), initial=len(tracks) - len(todo), desc=f"decode + log-mel ({num_proc} proc)")
    preload = ("music_clip_data.decode", "torchcodec.encoders", type(fe).__module__)
    limit = args.decode_time_limit or None
    for i, status in run_in_workers(decode_status, jobs, num_proc, limit, single_thread_worker, (), preload):
        if isinstance(status, str):  # the worker gave up: remembered, so a re-run does not pay again
            record_failure(cache_dir, paths[i], rules, status)
            status = failed_status(status)
        results[i] = status
        bar.update()
    bar.close()
    return results  # type: ignore[return-value]


def caption_tracks(
    tracks: list[Track],
    labels: dict[str, str | None],
    args: argparse.Namespace,
    cache: Path,
    measured: list[dict],
):
    optional = {
        "temperature": args.llm_temperature,
        "concurrency": args.llm_concurrency,
        "max_lyrics_chars": args.max_lyrics_chars,
    }
    settings = CaptionSettings(
        base_url=args.llm_base_url,
        model=args.llm_model if args.llm_base_url else None,
        api_key_env=args.llm_api_key_env,
        prompt=args.prompt,
        cache_dir=cache,
        **{k: v for k, v in optional.items() if v is not None},
    )
    inputs = []
    for t, descriptors in zip(tracks, measured, strict=True):
        label = labels.get(t.track_id)
        facts = {"title": t.title, "artist": t.artist, "genre": label, "tags": t.tags, **t.metadata}
        facts["descriptors"] = descriptors
        genres = list(t.tags) or ([label] if label else [])
        inputs.append(CaptionInput(t.track_id, t.lyrics, genres, t.template_sentences, facts))
    return caption_many(inputs, settings), settings


def _base_row(track: Track, status: dict, fe: Any = None, spans: list[tuple[float, float]] | None = None):
    """The row(s) of one kept track: the whole track, or one row per clip span (same group, own id)."""
    mel, flac = load_cached(status["cache_file"])
    metadata = {
        **track.metadata,
        "decode": json.loads(status["decode_info"]),
        "file_sha256": status["file_hash"],
    }
    pieces = [(track.track_id, mel, flac, status["duration_s"], None)]
    if spans is not None:
        pieces = [
            (clip_id(track.track_id, i), clip_mel, clip_flac, round(end - start, 3), (i, start, end))
            for i, ((start, end), (clip_mel, clip_flac)) in enumerate(zip(spans, cut_clips(flac, spans, fe)))
        ]
    for row_id, row_mel, row_flac, seconds, clip in pieces:
        if clip is not None:
            metadata["clip"] = {"track_id": track.track_id, "index": clip[0], "start_s": clip[1],
                                "end_s": clip[2], "clips_in_track": len(pieces)}  # fmt: skip
        yield {
            "track_id": row_id,
            "group_id": track.group_id,
            "source": track.source,
            "audio": {"bytes": row_flac, "path": f"{row_id.replace('/', '__').replace(':', '_')}.flac"},
            "mel": row_mel,
            "mel_length": int(row_mel.shape[0]),
            "duration_s": seconds,
            "title": track.title,
            "artist": track.artist,
            "tags": list(track.tags),
            "lyrics": track.lyrics,
            **{column: str(track.metadata.get(column, "")) for column in ATTRIBUTION_COLUMNS},
            "metadata": json.dumps(metadata, ensure_ascii=False, default=str),
            **(status["descriptors"] if clip is None else describe_flac(row_flac)),  # a clip: its own
        }


def _per_clip(values: list, counts: list[int]) -> list:
    """Each track's value once per clip: the grouped splits then count clips, not tracks."""
    return [v for v, n in zip(values, counts, strict=True) for _ in range(n)]


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0].split("(", 1)[0].strip()


def collect(run: SourceRun, skipped: list[dict]) -> list[Track]:
    """All tracks of the source, first of each `track_id` (later duplicates are reported as skipped)."""
    tracks: list[Track] = []
    first_path: dict[str, str] = {}
    for track in tqdm(run.tracks, desc=f"collect tracks ({run.name})", unit="track"):
        if track.track_id in first_path:
            skipped.append(
                {
                    "track_id": track.track_id,
                    "path": str(track.audio_path),
                    "reason": f"duplicate track_id (first: {first_path[track.track_id]})",
                }
            )
            continue
        first_path[track.track_id] = str(track.audio_path)
        tracks.append(track)
    return tracks


def build(args: argparse.Namespace) -> dict:
    """Run the whole build under the output folder's lock; returns the summary also written to build_summary.json.

    A second builder on the same folder is refused (`FolderLocked`, naming the holder): two would otherwise
    write and clean up the same shards and cache."""
    with folder_lock(args.output):
        return _build_locked(args)


def _build_locked(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    timings: dict[str, float] = {}
    output: Path = args.output
    output.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache_dir) if args.cache_dir else output / CACHE_DIR_NAME
    fe = load_feature_extractor(args.feature_extractor)
    settings = DecodeSettings(args.min_seconds, args.max_seconds, args.silence_dbfs)
    options = SourceOptions(
        args.audio_dir, args.metadata, args.size, cache / args.source, args.num_proc, args.seed,
        args.packages, args.debian_part, args.label_by_package,
    )  # fmt: skip
    run = open_source(args.source, options)

    skipped: list[dict] = []
    tracks = collect(run, skipped)
    n_duplicate_ids = len(skipped)
    timings["collect"] = time.perf_counter() - start

    t0 = time.perf_counter()
    statuses = decode_all(tracks, fe, settings, cache / "mels", args) if tracks else []
    timings["decode"] = time.perf_counter() - t0
    kept: list[tuple[Track, dict]] = []
    seen_hash: dict[str, str] = {}
    for track, status in zip(tracks, statuses, strict=True):
        entry = {"track_id": track.track_id, "path": str(track.audio_path)}
        if not status["ok"]:
            skipped.append({**entry, "reason": status["reason"]})
        elif status["file_hash"] in seen_hash:
            skipped.append(
                {**entry, "reason": f"duplicate audio (same content as {seen_hash[status['file_hash']]})"}
            )
        else:
            seen_hash[status["file_hash"]] = track.track_id
            kept.append((track, status))

    spans = {t.track_id: clip_spans(s["duration_s"], args.clips) for t, s in kept} if args.clips else {}

    def n_rows(track: Track) -> int:
        return len(spans[track.track_id]) if spans else 1

    # Labels: a label given by the source wins; else thesis Table 2 majority over the raw tags.
    labels: dict[str, str | None] = {}
    no_main_genre = labels_from_tags = 0
    for track, _ in kept:
        label = track.genre or (map_to_main_genre(track.tags, args.main_genres) if track.tags else None)
        labels[track.track_id] = label
        no_main_genre += int(label is None and bool(track.tags))
        labels_from_tags += int(track.genre is None and label is not None)

    # Roles: the source's, else by group (never splitting a group), per class.
    free = [(t, s) for t, s in kept if t.role is None]
    free_rows = [n_rows(t) for t, _ in free]
    group_roles = split_roles(
        _per_clip([labels[t.track_id] for t, _ in free], free_rows),
        _per_clip([t.group_id for t, _ in free], free_rows),
        args.captions_fraction,
        args.seed,
    )
    caption_set: list[tuple[Track, dict]] = []
    genre_set: list[tuple[Track, dict]] = []
    for track, status in kept:
        role = track.role or group_roles[track.group_id]
        if role == "captions":
            caption_set.append((track, status))
        elif labels[track.track_id] is None:
            why = "no main genre in its tags" if track.tags else "no genre label"
            skipped.append(
                {"track_id": track.track_id, "path": str(track.audio_path), "reason": f"{why} (genres)"}
            )
        else:
            genre_set.append((track, status))

    genre_labels = [labels[t.track_id] for t, _ in genre_set]
    genre_rows = [n_rows(t) for t, _ in genre_set]
    clip_in_test = test_mask(
        _per_clip(genre_labels, genre_rows),
        _per_clip([t.group_id for t, _ in genre_set], genre_rows),
        args.test_size,
        args.seed,
    )
    in_test = clip_in_test[np.cumsum([0, *genre_rows[:-1]]).astype(int)] if genre_set else clip_in_test
    present = set(genre_labels)
    genre_names = [g for g in args.main_genres if g in present] + sorted(present - set(args.main_genres))

    t0 = time.perf_counter()
    caption_counts: Counter[str] = Counter({"new": 0, "cached": 0, "failed": 0, "template": 0})
    caption_errors: list[str] = []
    caption_rows: list[dict] = []
    caption_settings = None
    if caption_set:
        results, caption_settings = caption_tracks(
            [t for t, _ in caption_set],
            labels,
            args,
            cache / "captions",
            [s["descriptors"] for _, s in caption_set],
        )
        for (track, status), result in zip(caption_set, results, strict=True):
            caption_counts[result.status] += 1
            if result.status == "failed" or not result.sentences:
                caption_errors.append(result.error or "no caption")
                skipped.append(
                    {
                        "track_id": track.track_id,
                        "path": str(track.audio_path),
                        "reason": f"caption failed: {result.error}",
                        "raw": result.raw,
                    }
                )
                continue
            caption_rows.append(
                {
                    "track": track,
                    "status": status,
                    "caption": " ".join(result.sentences),
                    "sentences": list(result.sentences),
                    "caption_source": result.caption_source,
                    "caption_prompt": result.prompt or "",
                    "caption_model": result.model or "",
                    "caption_temperature": result.temperature,
                    "caption_raw": result.raw or "",
                }
            )
    timings["captions"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    n_mels = int(fe.feature_size)
    total_rows = sum(n_rows(r["track"]) for r in caption_rows) + sum(genre_rows)
    shards: dict[str, dict[str, list[Path]]] = {"captions": {}, "genres": {}}
    build_id = unique_token()  # new shard names: the previous build's shards stay readable until the card
    features = {"captions": captions_features(n_mels), "genres": genres_features(n_mels, genre_names)}
    with tqdm(total=total_rows, desc="write parquet", unit="clip") as bar:
        shards["captions"]["train"] = write_split(
            ({**row, **{k: v for k, v in r.items() if k not in ("track", "status")}}
             for r in caption_rows for row in _base_row(r["track"], r["status"], fe, spans.get(r["track"].track_id))),
            features["captions"],
            output / "captions",
            "train",
            build_id,
            progress=bar.update,
        )  # fmt: skip
        for split, wanted in (("train", False), ("test", True)):
            chosen = [(t, s) for (t, s), flag in zip(genre_set, in_test, strict=True) if bool(flag) == wanted]
            shards["genres"][split] = write_split(
                (
                    {**row, "genre": labels[t.track_id]}
                    for t, s in chosen
                    for row in _base_row(t, s, fe, spans.get(t.track_id))
                ),
                features["genres"],
                output / "genres",
                split,
                build_id,
                progress=bar.update,
            )
    fe.save_pretrained(str(output / "feature_extractor"))
    timings["write"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - start

    skipped = run.skipped + skipped
    per_split: dict[str, Counter] = defaultdict(Counter)
    for (track, _), flag in zip(genre_set, in_test, strict=True):
        per_split["test" if flag else "train"][labels[track.track_id]] += n_rows(track)
    caption_rows_n = sum(n_rows(r["track"]) for r in caption_rows)
    summary = {
        "source": args.source,
        "tracks_in": len(tracks) + n_duplicate_ids + len(run.skipped),
        "kept": caption_rows_n + sum(genre_rows),
        "captions_rows": caption_rows_n,
        "genres_rows": sum(genre_rows),
        "clips": {
            **asdict(args.clips),
            "tracks": len(caption_rows) + len(genre_set),
            "captions_tracks": len(caption_rows),
            "genres_tracks": len(genre_set),
        }
        if args.clips
        else None,
        "skipped": len(skipped),
        "skipped_by_reason": dict(Counter(_reason_kind(s["reason"]) for s in skipped).most_common()),
        "handled": run.handled,
        "no_main_genre": no_main_genre,
        "captions": dict(caption_counts),
        "caption_failures_by_reason": dict(Counter(_reason_kind(e) for e in caption_errors).most_common()),
        "mel_cache": {
            "hits": sum(s["from_cache"] for _, s in kept),
            "computed": sum(not s["from_cache"] for _, s in kept),
        },
        "clips_per_class_and_split": {"train": dict(per_split["train"]), "test": dict(per_split["test"])},
        "genre_names": genre_names,
        "decode_clips_per_s": round(len(tracks) / timings["decode"], 2) if timings["decode"] > 0 else None,
        "num_proc": args.num_proc,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "decode_settings": asdict(settings),
        "seed": args.seed,
        "source_summary": run.summary() if run.summary else None,
    }
    write_reports(output, skipped, summary)
    info = card_info(args, run, summary, genre_names, fe, caption_settings)
    info["labels_from_tags"] = labels_from_tags
    info["dataset_info"] = [
        dataset_info_yaml(name, features[name], shards[name]) for name in ("captions", "genres")
    ]
    info["shard_files"] = {
        name: {split: [p.relative_to(output).as_posix() for p in paths] for split, paths in splits.items()}
        for name, splits in shards.items()
    }
    # The commit point: the card names this build's exact shards; only then do the old ones go.
    atomic_write_text(output / "README.md", str(render_card(info)))
    remove_stale_files(
        [output / name for name in shards], [p for s in shards.values() for p in chain(*s.values())]
    )
    if args.push_to_hub and not refused_for_failed_captions(summary, args):
        push(output, args.push_to_hub)
    return summary


def refused_for_failed_captions(summary: dict, args: argparse.Namespace) -> bool:
    """Tracks whose caption failed after every retry are gaps: the build fails (and is not pushed) unless the
    user accepts them with --allow-failed-captions."""
    return bool(summary["captions"]["failed"]) and not args.allow_failed_captions


def card_info(args, run: SourceRun, summary: dict, genre_names: list[str], fe: Any, caption_settings) -> dict:
    section = run.card_section() if run.card_section else ""
    prompt_name = args.prompt if args.prompt in ("thesis", "lyrics-comment") else "custom"
    prompt_text = PROMPTS.get(args.prompt, args.prompt)
    licence = run.licence.lower()
    train, test = summary["clips_per_class_and_split"]["train"], summary["clips_per_class_and_split"]["test"]
    splits = {
        "captions": ["train"] if summary["captions_rows"] else [],
        "genres": [name for name, counts in (("train", train), ("test", test)) if sum(counts.values())],
    }
    return {
        "splits": splits,
        "pretty_name": f"MusicCLIP dataset ({run.name})",
        "license_id": "mit" if licence.startswith("mit") else "other",
        "source_names": [run.name],
        "sources": [
            {
                "name": run.name,
                "description": run.description,
                "licence": run.licence,
                "card_section": section,
            }
        ],
        "summary": summary,
        "genre_names": genre_names,
        "main_genres": args.main_genres,
        "caption_prompt": prompt_text,
        "caption_prompt_name": prompt_name,
        "caption_model": args.llm_model if args.llm_base_url else None,
        "caption_temperature": getattr(caption_settings, "temperature", None),
        "command": redacted_command("build_dataset.py", args.argv),
        "split_rule": (
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
        ),
        "feature_extractor": f"{type(fe).__name__}(n_mels={fe.feature_size}, sr={fe.sampling_rate}, "
        f"hop={getattr(fe, 'hop_length', '?')}, n_fft={getattr(fe, 'n_fft', '?')})",
        "num_proc": args.num_proc,
        "limits": [
            "Audio is stored as 16 kHz mono FLAC (what the model hears), not the original files.",
            "Captions are pseudo-captions (LLM) or metadata templates; none were checked by a person.",
            "Genre labels from tags follow a majority heuristic over noisy tags (thesis Table 2).",
            "Test-split scores on small classes (few groups) have high variance.",
        ],
    }


def write_reports(output: Path, skipped: list[dict], summary: dict) -> None:
    lines = [json.dumps(entry, ensure_ascii=False, default=str) + "\n" for entry in skipped]
    atomic_write_text(output / "skipped.jsonl", "".join(lines))
    atomic_write_text(output / "build_summary.json", json.dumps(summary, indent=2, ensure_ascii=False))


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
    from huggingface_hub import HfApi

    token = os.environ.get("HF_TOKEN")
    if not token:
        raise SystemExit("--push-to-hub needs a token in the HF_TOKEN environment variable")
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", exist_ok=True)
    api.upload_folder(
        folder_path=str(output),
        repo_id=repo_id,
        repo_type="dataset",
        allow_patterns=published_files(output),  # our own names: no glob characters in them
        # Remote files not uploaded now: the previous push's shards, and what older builders published by mistake.
        delete_patterns=["captions/*.parquet", "genres/*.parquet", "skipped.jsonl", "*.tmp", LOCK_NAME],
    )


def format_summary(summary: dict) -> str:
    lines = [
        f"tracks in {summary['tracks_in']}, kept {summary['kept']} "
        f"(captions {summary['captions_rows']}, genres {summary['genres_rows']}), skipped {summary['skipped']}",
    ]
    lines += [f"  skipped: {reason}: {n}" for reason, n in summary["skipped_by_reason"].items()]
    if summary["handled"]:
        lines.append(f"  handled (kept after repair): {len(summary['handled'])}")
    lines.append("captions: " + ", ".join(f"{k} {v}" for k, v in summary["captions"].items()))
    lines += [
        f"  caption failed: {reason}: {n}" for reason, n in summary["caption_failures_by_reason"].items()
    ]
    lines.append(
        f"mels: {summary['mel_cache']['computed']} computed, {summary['mel_cache']['hits']} from cache"
    )
    if summary.get("clips"):
        lines.append(f"clips: {summary['kept']} rows from {summary['clips']['tracks']} tracks")
    for split in ("train", "test"):
        counts = summary["clips_per_class_and_split"][split]
        lines.append(
            f"genres/{split}: " + ", ".join(f"{g} {counts.get(g, 0)}" for g in summary["genre_names"])
        )
    lines.append(f"time: {summary['timings_s']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = build(args)
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
        reasons = "; ".join(f"{k}: {n}" for k, n in summary["caption_failures_by_reason"].items())
        pushed = " and did not push it" if args.push_to_hub else ""
        print(
            f"build_dataset.py: error: {summary['captions']['failed']} caption(s) failed ({reasons}); the dataset "
            f"was written without those tracks{pushed}. Re-run the same command to ask again (finished work is "
            "cached), or pass --allow-failed-captions to accept the gaps.",
            file=sys.stderr,
        )
        return EXIT_FAILED_CAPTIONS
    return 0


if __name__ == "__main__":
    sys.exit(main())
