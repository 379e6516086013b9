"""The bundled music21 corpus source: real compositions rendered to 16 kHz clips, labelled by style.

Usage: `for track in music21_tracks("small", cache_dir, workers=2, seed=0): ...` or the `Music21Source`
class, whose `failures` (for skipped.jsonl) and `summary()` are filled once iteration has started.

The build is resumable: work is cut into chunks of pieces; each finished chunk appends one line to
`manifest.jsonl` beside its FLAC clips, and a rerun skips every chunk already there.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from music_clip_data.music21 import midi as m21midi
from music_clip_data.music21 import render
from music_clip_data.music21.captions import template_sentences
from music_clip_data.music21.card import music21_card_section
from music_clip_data.music21.notes import flatten_piece, window_key
from music_clip_data.music21.styles import CLASS_NAMES, STYLES, Piece, corpus_pieces
from music_clip_data.track import Track

LICENCE = (
    "music21 corpus scores (public domain or used by permission; Essen folksongs for non-commercial use), "
    "rendered with FluidR3_GM (MIT) and TimGM6mb (GPL-2)"
)
CLIP_SECONDS = 15.0
GAP_SECONDS = 1.0
# One shared pool for every class: GM programs (piano, harpsichord, organ, guitar, strings, choir, reeds...).
PROGRAMS = (0, 6, 11, 19, 21, 24, 40, 48, 52, 68, 71, 73)
FONTS = tuple(render.SOUNDFONTS)
BPM_RANGE = (70, 140)  # quarter notes per minute; marked tempi are ignored (only some sources mark them)
TRANSPOSE_RANGE = (-5, 6)  # semitones, inclusive


@dataclass(frozen=True)
class SizeSpec:
    genre_clips: int  # per class
    caption_clips: int
    clips_per_piece: int  # raised per class where the corpus has few pieces
    cheap: bool  # prefer pieces with few notes (fast to parse)


SIZES = {
    "small": SizeSpec(genre_clips=12, caption_clips=22, clips_per_piece=3, cheap=True),
    "quick": SizeSpec(genre_clips=200, caption_clips=300, clips_per_piece=3, cheap=False),
    "full": SizeSpec(genre_clips=620, caption_clips=1500, clips_per_piece=4, cheap=False),
}


def _stable(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


def _est_clips(piece: Piece, cap: int) -> int:
    seconds = piece.length_ql * 60.0 / np.mean(BPM_RANGE)
    return max(1, min(cap, int(seconds // CLIP_SECONDS)))


def _ordered(pieces: list[Piece], rng: np.random.Generator, cheap: bool) -> list[Piece]:
    """Round-robin over shuffled groups (one piece per group per round) so many groups are represented."""
    groups: dict[str, list[Piece]] = defaultdict(list)
    for p in sorted(pieces, key=lambda p: p.key):
        groups[p.group_id].append(p)
    names = sorted(groups)
    rng.shuffle(names)
    if cheap:
        names.sort(key=lambda g: min(p.note_count for p in groups[g]))  # stable: shuffle breaks ties
    for g in names:
        members = groups[g]
        order = rng.permutation(len(members))
        groups[g] = (
            sorted((members[i] for i in order), key=lambda p: p.note_count)
            if cheap
            else [members[i] for i in order]
        )
    out: list[Piece] = []
    depth = max(len(v) for v in groups.values())
    for r in range(depth):
        out += [groups[g][r] for g in names if r < len(groups[g])]
    return out


# The captions config (pretraining) is at least this many times the genres config (few-shot) in audio, and
# comes from more distinct pieces (issue 16: the thesis pretrains on ~7x more audio than it labels).
CAPTIONS_PER_GENRE_CLIP = 3.0
# Planned windows are a lower bound (repeats only lengthen a piece; the small build and a sample of the quick
# one made 14-15 % more than planned); the margin covers failed pieces.
PLAN_MARGIN = 1.05
# A long caption piece gives up to this many non-overlapping windows, each with its own draws and caption.
CAPTION_WINDOWS_PER_PIECE = 6
# Caption pieces beyond the first part stay under this many notes: in a sample of the quick build's caption
# chunks, 4 piano scores of 2,000-5,000 notes took 3x longer to parse than the 148 other pieces together.
CAPTION_MAX_NOTES = 2000


def plan(size: str, seed: int, extra_pieces: Sequence[Piece] = ()) -> list[tuple[Piece, str, int]]:
    """Deterministic (piece, role, max clips) list: `plan_parts`' two parts in order."""
    first, more = plan_parts(size, seed, extra_pieces)
    return first + more


def plan_parts(
    size: str, seed: int, extra_pieces: Sequence[Piece] = ()
) -> tuple[list[tuple[Piece, str, int]], list[tuple[Piece, str, int]]]:
    """The genres config with the first caption pieces (chunked together, as before issue 16), then more captions.

    The first part is exactly the plan of commit 6558419: FluidSynth renders a chunk's clips one after another in
    one run, so a genre clip's samples may depend on its neighbours; keeping those chunks as they were keeps the
    genres config's audio (and the resume of older caches). Groups used for genres never appear in captions.
    """
    first, pools = _first_plan(size, seed, extra_pieces)
    return first, _more_captions(size, seed, first, pools)


def _first_plan(
    size: str, seed: int, extra_pieces: Sequence[Piece]
) -> tuple[list[tuple[Piece, str, int]], list[list[Piece]]]:
    """Genre pieces, then caption pieces at 2 windows each (unchanged: the genres' rng sequence), and the pools
    of caption candidates (caption extras, then each class' groups left over from genres) in their drawn order."""
    spec = SIZES[size]
    rng = np.random.default_rng(seed)
    by_style: dict[str, list[Piece]] = defaultdict(list)
    for p in corpus_pieces():
        by_style[p.style].append(p)
    chosen: list[tuple[Piece, str, int]] = []
    leftovers: list[list[Piece]] = []
    for style in CLASS_NAMES:
        pieces = by_style[style]
        cap = max(spec.clips_per_piece, int(np.ceil(1.3 * spec.genre_clips / len(pieces))))
        if style == "classical_string_quartet":  # long movements, slow to parse: more windows from each
            cap = max(cap, 2 * spec.clips_per_piece)
        order = _ordered(pieces, rng, spec.cheap)
        total, used_groups = 0, set()
        for p in order:
            if total >= 1.15 * spec.genre_clips:
                break
            chosen.append((p, "genres", cap))
            used_groups.add(p.group_id)
            total += _est_clips(p, cap)
        if style != "classical_string_quartet":  # too few works to spare any for captions
            leftovers.append([p for p in order if p.group_id not in used_groups])
    extras = [p for s, ps in by_style.items() if s not in STYLES for p in ps]
    leftovers.insert(0, _ordered(extras, rng, spec.cheap) if extras else [])
    total, cursors = 0, [0] * len(leftovers)
    chosen += [(p, "captions", 2) for p in extra_pieces]
    while total < 1.1 * spec.caption_clips and any(
        c < len(x) for c, x in zip(cursors, leftovers, strict=True)
    ):
        for i, pool in enumerate(leftovers):
            if cursors[i] < len(pool) and total < 1.1 * spec.caption_clips:
                p = pool[cursors[i]]
                cursors[i] += 1
                chosen.append((p, "captions", 2))
                total += _est_clips(p, 2)
    return chosen, leftovers


def planned_windows(piece: Piece, seed: int, cap: int) -> int:
    """Windows `render_chunk` cuts from `piece` if its parsed length is the metadata's: a lower bound, since
    repeat expansion only lengthens a piece (windows of rests only, and failures, are what the margin covers)."""
    return len(_draws(piece, seed, cap, piece.length_ql))


def caption_targets(size: str, first: list[tuple[Piece, str, int]]) -> tuple[int, int]:
    """(caption windows, caption pieces) to plan: the ratio over the genres config, with margin."""
    genre_clips = SIZES[size].genre_clips * len(CLASS_NAMES)  # _balance caps each class at genre_clips
    genre_pieces = sum(role == "genres" for _, role, _ in first)  # planned: at least the built count
    return (
        int(np.ceil(PLAN_MARGIN * CAPTIONS_PER_GENRE_CLIP * genre_clips)),
        int(np.ceil(PLAN_MARGIN * genre_pieces)) + 1,
    )


def _more_captions(
    size: str, seed: int, first: list[tuple[Piece, str, int]], pools: list[list[Piece]]
) -> list[tuple[Piece, str, int]]:
    """Caption pieces beyond the first part, one per pool per round, until both targets are planned."""
    want_windows, want_pieces = caption_targets(size, first)
    captions = [(p, cap) for p, role, cap in first if role == "captions"]
    windows = sum(planned_windows(p, seed, cap) for p, cap in captions)
    pieces = len(captions)
    taken = {p.key for p, _ in captions}
    queues = [[p for p in pool if p.key not in taken and p.note_count <= CAPTION_MAX_NOTES] for pool in pools]
    more: list[tuple[Piece, str, int]] = []
    for depth in range(max(map(len, queues), default=0)):
        for queue in queues:
            if windows >= want_windows and pieces >= want_pieces:
                return more
            if depth < len(queue):
                more.append((queue[depth], "captions", CAPTION_WINDOWS_PER_PIECE))
                windows += planned_windows(queue[depth], seed, CAPTION_WINDOWS_PER_PIECE)
                pieces += 1
    return more


def _chunks(items: list[tuple[Piece, str, int]], max_notes: int = 4000, max_pieces: int = 16) -> list[list]:
    """Group cheap pieces so one FluidSynth run (one SoundFont load) renders many clips."""
    chunks: list[list] = []
    current: list = []
    notes = 0
    for item in sorted(items, key=lambda it: -it[0].note_count):
        if current and (notes + item[0].note_count > max_notes or len(current) >= max_pieces):
            chunks.append(current)
            current, notes = [], 0
        current.append(item)
        notes += item[0].note_count
    return chunks + ([current] if current else [])


# Caption chunks beyond the first part: bounded by windows (render and finish cost) and notes (parse cost).
CAPTION_CHUNK_WINDOWS = 48
CAPTION_CHUNK_NOTES = 20000


def _caption_chunks(items: list[tuple[Piece, str, int]], seed: int) -> list[list]:
    """Chunks of caption pieces, so each FluidSynth run renders ~CAPTION_CHUNK_WINDOWS / len(FONTS) clips."""
    chunks: list[list] = []
    current: list = []
    windows = notes = 0
    for item in sorted(items, key=lambda it: (-it[0].note_count, it[0].key)):
        n = planned_windows(item[0], seed, item[2])
        if current and (
            windows + n > CAPTION_CHUNK_WINDOWS or notes + item[0].note_count > CAPTION_CHUNK_NOTES
        ):
            chunks.append(current)
            current, windows, notes = [], 0, 0
        current.append(item)
        windows += n
        notes += item[0].note_count
    return chunks + ([current] if current else [])


def _chunk_id(chunk: list, seed: int) -> str:
    text = f"{seed}|" + "|".join(f"{p.key}:{role}:{cap}" for p, role, cap in chunk)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _draws(piece: Piece, seed: int, cap: int, length_ql: float) -> list[dict[str, Any]]:
    """Render parameters and window starts for one piece, from the same distributions for every class."""
    rng = np.random.default_rng([seed, _stable(piece.key)])
    draws = [
        {
            "bpm": float(rng.integers(BPM_RANGE[0], BPM_RANGE[1] + 1)),
            "transpose": int(rng.integers(TRANSPOSE_RANGE[0], TRANSPOSE_RANGE[1] + 1)),
            "program": int(rng.choice(PROGRAMS)),
            "soundfont": str(rng.choice(FONTS)),
        }
        for _ in range(cap)
    ]
    # Non-overlapping windows spread evenly; as many as fit (at least one: short pieces are looped).
    while len(draws) > 1 and sum(CLIP_SECONDS * d["bpm"] / 60 for d in draws) > length_ql:
        draws.pop()
    widths = [CLIP_SECONDS * d["bpm"] / 60 for d in draws]
    gap = max(0.0, (length_ql - sum(widths)) / (len(draws) + 1))
    cursor = gap
    for d, w in zip(draws, widths, strict=True):
        d["window_start_ql"] = round(cursor if len(draws) > 1 or length_ql > w else 0.0, 3)
        cursor += w + gap
    return draws


def _render_batch(
    jobs: list[dict[str, Any]], font: str, work: Path, timings: dict[str, float]
) -> list[np.ndarray]:
    """Render clips that share a SoundFont in one FluidSynth run; return each clip's mono samples."""
    mid, wav = work / f"{font}.mid", work / f"{font}.wav"
    t0 = time.perf_counter()
    m21midi.write_batch(mid, [(j["notes"], j["program"]) for j in jobs], CLIP_SECONDS, GAP_SECONDS)
    timings["midi_s"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    span = len(jobs) * (CLIP_SECONDS + GAP_SECONDS) + 5.0
    max_bytes = int(span * render.SAMPLE_RATE * 4 * 1.5) + 1_000_000  # stereo int16, 50% slack
    render.render_midi(mid, wav, font, timeout_s=30 + 2 * span, max_bytes=max_bytes)
    import soundfile as sf

    audio, sr = sf.read(wav, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    step, n = int((CLIP_SECONDS + GAP_SECONDS) * sr), int(CLIP_SECONDS * sr)
    out = []
    for k in range(len(jobs)):
        clip = mono[k * step : k * step + n]
        out.append(np.pad(clip, (0, n - len(clip))))
    timings["render_s"] += time.perf_counter() - t0
    return out


def render_chunk(chunk: list[tuple[Piece, str, int]], seed: int, out_dir: Path) -> dict[str, Any]:
    """Parse, write MIDI and render every clip of one chunk (runs in a worker process)."""
    import soundfile as sf

    timings = {"parse_s": 0.0, "midi_s": 0.0, "render_s": 0.0, "finish_s": 0.0, "pieces": len(chunk)}
    failures: list[dict[str, str]] = []
    jobs: list[dict[str, Any]] = []
    for piece, role, cap in chunk:
        t0 = time.perf_counter()
        try:
            flat = flatten_piece(piece)
        except Exception as err:  # any parse error of any format: record it, never drop silently
            failures.append({"path": piece.key, "reason": f"parse failed: {type(err).__name__}: {err}"[:500]})
            continue
        finally:
            timings["parse_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for i, d in enumerate(_draws(piece, seed, cap, flat.length_ql)):
            notes = m21midi.clip_notes(flat, d["window_start_ql"], d["bpm"], CLIP_SECONDS, d["transpose"])
            if len(notes.pitches) == 0:
                continue  # a window of rests only: not a clip
            jobs.append({"piece": piece, "role": role, "index": i, "flat": flat, "notes": notes, **d})
        timings["midi_s"] += time.perf_counter() - t0
    clips: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="m21render-") as tmp:
        for font in FONTS:
            batch = [j for j in jobs if j["soundfont"] == font]
            if not batch:
                continue
            try:
                audio = _render_batch(batch, font, Path(tmp), timings)
            except render.RenderError:
                audio = []  # isolate the culprit: render piece by piece
                for key in dict.fromkeys(j["piece"].key for j in batch):
                    part = [j for j in batch if j["piece"].key == key]
                    try:
                        audio += _render_batch(part, font, Path(tmp), timings)
                    except render.RenderError as err:
                        failures.append({"path": key, "reason": f"render failed ({font}): {err}"})
                        audio += [None] * len(part)
            t0 = time.perf_counter()  # normalise, encode FLAC, analyse the key for captions
            for j, mono in zip(batch, audio, strict=True):
                if mono is None:
                    continue
                clip, before, after = render.normalise(mono)
                if before <= -70:
                    failures.append(
                        {"path": j["piece"].key, "reason": f"window {j['index']} rendered silent"}
                    )
                    continue
                name = f"m21-{_stable(j['piece'].key):012x}-{j['index']}"
                sf.write(out_dir / f"{name}.flac", clip, render.SAMPLE_RATE, subtype="PCM_16")
                clips.append(_clip_record(j, name, before, after))
            timings["finish_s"] += time.perf_counter() - t0
    return {"clips": clips, "failures": failures, "timings": timings}


def _clip_record(job: dict[str, Any], name: str, before: float, after: float) -> dict[str, Any]:
    piece: Piece = job["piece"]
    flat = job["flat"]
    key_mode = window_key(flat, job["window_start_ql"], CLIP_SECONDS * job["bpm"] / 60, job["transpose"])
    style_name = STYLES[piece.style][0] if piece.is_class else piece.style
    facts = {
        **piece.facts,
        "title": piece.title,
        "composer": piece.composer,
        "collection": piece.collection,
        "style_name": style_name,
        "key_mode": key_mode,
        "bpm": job["bpm"],
        "voices": flat.n_voices,
        "lyrics": flat.lyrics,
        "language": flat.language,
    }
    metadata = {
        "piece": piece.key,
        "window_start_ql": job["window_start_ql"],
        "clip_seconds": CLIP_SECONDS,
        "program": job["program"],
        "soundfont": job["soundfont"],
        "tempo_bpm": job["bpm"],
        "transpose": job["transpose"],
        "loudness_before_lufs": round(before, 2),
        "loudness_lufs": round(after, 2),
        "repeats_expanded": flat.repeats_expanded,
        "voices": flat.n_voices,
        "facts": {k: v for k, v in facts.items() if k != "lyrics"},
    }
    return {
        "track_id": name,
        "file": f"{name}.flac",
        "group_id": f"music21:{piece.group_id}",
        "role": job["role"],
        "genre": piece.style if piece.is_class and job["role"] == "genres" else None,
        "title": piece.title,
        "artist": piece.composer or piece.collection,
        "lyrics": flat.lyrics,
        "tags": [style_name],
        "metadata": metadata,
        "template_sentences": template_sentences(facts),
    }


class Music21Source:
    """Iterable of `Track`s from the music21 corpus; renders (or resumes) on first iteration."""

    def __init__(
        self,
        size: str = "full",
        cache_dir: Path | str = Path("cache/music21"),
        workers: int = 2,
        seed: int = 0,
        extra_pieces: Sequence[Piece] = (),
        progress: bool = True,
    ) -> None:
        if size not in SIZES:
            raise ValueError(f"size must be one of {sorted(SIZES)}, not {size!r}")
        self.size, self.seed, self.workers, self.progress = size, seed, max(1, workers), progress
        self.extra_pieces = list(extra_pieces)
        self.dir = Path(cache_dir) / f"music21-{size}-seed{seed}"
        self.failures: list[dict[str, str]] = []
        self.stats: dict[str, Any] = {}
        self._records: list[dict[str, Any]] | None = None

    @property
    def manifest(self) -> Path:
        return self.dir / "manifest.jsonl"

    def _done(self) -> dict[str, dict[str, Any]]:
        done: dict[str, dict[str, Any]] = {}
        if self.manifest.exists():
            for line in self.manifest.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill: that chunk is simply redone
                if all((self.dir / c["file"]).exists() for c in row["clips"]):
                    done[row["chunk"]] = row
        return done

    def build(self) -> list[dict[str, Any]]:
        """Render every chunk not yet in the manifest; return all clip records in plan order."""
        if self._records is not None:
            return self._records
        render.check_tools()
        start = time.perf_counter()
        self.dir.mkdir(parents=True, exist_ok=True)
        first, more = plan_parts(self.size, self.seed, self.extra_pieces)
        items = first + more  # plan order: _balance keeps the same genre clips as before issue 16
        chunks = {_chunk_id(c, self.seed): c for c in _chunks(first) + _caption_chunks(more, self.seed)}
        done = self._done()
        todo = [cid for cid in chunks if cid not in done]
        from tqdm.auto import tqdm

        bar = tqdm(total=len(chunks), initial=len(chunks) - len(todo), desc=f"music21 {self.size}",
                   unit="chunk", disable=not self.progress)  # fmt: skip
        if todo:
            # spawn, not fork: a parent that has loaded torch (loudness) deadlocks forked children
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(self.workers, mp_context=ctx) as pool, self.manifest.open("a") as log:
                futures = {pool.submit(render_chunk, chunks[cid], self.seed, self.dir): cid for cid in todo}
                for fut in as_completed(futures):
                    row = {"chunk": futures[fut], **fut.result()}
                    log.write(json.dumps(row) + "\n")
                    log.flush()
                    os.fsync(log.fileno())
                    done[row["chunk"]] = row
                    bar.update()
        bar.close()
        timings = Counter()
        for cid in chunks:
            timings.update({k: v for k, v in done[cid]["timings"].items()})
        self.failures = [f for cid in chunks for f in done[cid]["failures"]]
        order = {p.key: i for i, (p, _, _) in enumerate(items)}
        records = sorted((c for cid in chunks for c in done[cid]["clips"]),
                         key=lambda c: (order[c["metadata"]["piece"]], c["track_id"]))  # fmt: skip
        records = self._balance(records)
        self.stats = {
            "size": self.size,
            "seed": self.seed,
            "chunks": len(chunks),
            "chunks_rendered": len(todo),
            "wall_s": round(time.perf_counter() - start, 1),
            "stage_cpu_s": {k: round(v, 1) for k, v in timings.items() if k.endswith("_s")},
            "pieces": int(timings["pieces"]),
        }
        self._records = records
        return records

    def _balance(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Cap genre clips per class at the size's target, so classes stay balanced.

        Clips are kept window by window across pieces (every piece's first window, then second windows...)
        so the cap removes repeated windows of long pieces before it removes pieces or groups.
        """
        target = SIZES[self.size].genre_clips
        genre = [
            (int(r["track_id"].rsplit("-", 1)[1]), i) for i, r in enumerate(records) if r["role"] == "genres"
        ]
        seen: Counter = Counter()
        keep = {i for i, r in enumerate(records) if r["role"] != "genres"}
        for _, i in sorted(genre):
            seen[records[i]["genre"]] += 1
            if seen[records[i]["genre"]] <= target:
                keep.add(i)
        return [r for i, r in enumerate(records) if i in keep]

    def __iter__(self) -> Iterator[Track]:
        for r in self.build():
            yield Track(
                track_id=r["track_id"],
                audio_path=self.dir / r["file"],
                group_id=r["group_id"],
                source="music21",
                title=r["title"],
                artist=r["artist"],
                lyrics=r["lyrics"],
                tags=list(r["tags"]),
                genre=r["genre"],
                role=r["role"],
                metadata=r["metadata"],
                template_sentences=list(r["template_sentences"]),
            )

    def summary(self) -> dict[str, Any]:
        """Clips per class and role, failures and timings (for build_summary.json and the card)."""
        records = self.build()
        per_class = Counter(r["genre"] for r in records if r["role"] == "genres")
        return {
            **self.stats,
            "clips": len(records),
            "genre_clips_per_class": {c: per_class.get(c, 0) for c in CLASS_NAMES},
            "genre_groups_per_class": {
                c: len({r["group_id"] for r in records if r["genre"] == c}) for c in CLASS_NAMES
            },
            "caption_clips": sum(r["role"] == "captions" for r in records),
            "caption_groups": len({r["group_id"] for r in records if r["role"] == "captions"}),
            **role_ratios(records),
            "failures": len(self.failures),
        }

    def card_section(self) -> str:
        """Markdown for the dataset card (class table, rendering, licences, confounds)."""
        return music21_card_section(self.summary(), RENDER_FACTS)


def role_ratios(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Captions : genres in clips (every clip is CLIP_SECONDS, so also in audio seconds) and in pieces."""
    clips = Counter(r["role"] for r in records)
    pieces = {role: len({r["metadata"]["piece"] for r in records if r["role"] == role}) for role in clips}
    genre_clips, genre_pieces = clips.get("genres", 0), pieces.get("genres", 0)
    return {
        "genre_pieces": genre_pieces,
        "caption_pieces": pieces.get("captions", 0),
        "caption_seconds": clips.get("captions", 0) * CLIP_SECONDS,
        "genre_seconds": genre_clips * CLIP_SECONDS,
        "captions_per_genre_clip": round(clips.get("captions", 0) / genre_clips, 2) if genre_clips else None,
        "captions_per_genre_piece": round(pieces.get("captions", 0) / genre_pieces, 2)
        if genre_pieces
        else None,
    }


RENDER_FACTS = {"clip_seconds": CLIP_SECONDS, "programs": PROGRAMS, "bpm_range": BPM_RANGE,
                "transpose_range": TRANSPOSE_RANGE}  # fmt: skip


def music21_tracks(size: str, cache_dir: Path, workers: int = 2, seed: int = 0) -> Iterator[Track]:
    """Tracks of the music21 corpus source (see `Music21Source` for failures and the summary)."""
    return iter(Music21Source(size, cache_dir, workers, seed))


def pieces_from_files(paths: Sequence[Path], style: str = "user score") -> list[Piece]:
    """Wrap score files outside the corpus as caption pieces (used to test failure recording)."""
    return [
        Piece(
            key=str(p),
            path=str(p),
            number=None,
            style=style,
            group_id=f"file:{p}",
            title=Path(p).stem,
            composer="",
            collection="",
            length_ql=0.0,
            note_count=0,
        )  # fmt: skip
        for p in paths
    ]


__all__ = ["Music21Source", "music21_tracks", "music21_card_section", "pieces_from_files", "plan", "SIZES"]
