"""Benchmark score parsing: `flatten_piece` against music21's defaults, on the same pieces in one process.

Also each clip's key: `window_key` against music21's `getSolution` (which builds 23 alternative keys too).

    python benchmarks/bench_parse.py --size quick --role genres --pieces 200

The baseline is what the builder did before: `corpus.parse` with music21's own cache (it pickles each parsed
score to its scratch folder, here a fresh temporary one, and reads it back) and `Stream.expandRepeats`, which
deep-copies every measure. The new path parses from source and expands repeats in place. Each piece is parsed
both ways, alternating which goes first, and the flattened notes must be identical.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from music_clip_data.music21 import notes
from music_clip_data.music21.styles import Piece
from music_clip_data.sources.music21_corpus import plan

FIELDS = ("starts", "durations", "pitches", "voices")


def music21_defaults(piece: Piece) -> notes.Flattened:
    from music21 import corpus

    score = corpus.parse(piece.path, number=piece.number) if piece.number else corpus.parse(piece.path)
    return notes._flatten_score(piece, score, notes._expand_repeats_copying)


def same(a: notes.Flattened, b: notes.Flattened) -> bool:
    arrays = all(np.array_equal(getattr(a, f), getattr(b, f)) for f in FIELDS)
    return arrays and (a.length_ql, a.repeats_expanded, a.lyrics) == (
        b.length_ql,
        b.repeats_expanded,
        b.lyrics,
    )


def key_by_get_solution(flat: notes.Flattened, start: float, length: float, transpose: int) -> str:
    from music21 import analysis

    k = analysis.discrete.KrumhanslSchmuckler().getSolution(
        notes.pitch_class_stream(flat, start, length, transpose)
    )
    return f"{k.tonic.name.replace('-', ' flat')} {k.mode}"


def bench_keys(flats: list[notes.Flattened]) -> None:
    rng = np.random.default_rng(0)
    windows = [
        (f, float(rng.uniform(0, max(0.0, f.length_ql - 25))), int(rng.integers(-5, 7))) for f in flats
    ]
    totals, answers = {}, {}
    for name, fn in (("getSolution", key_by_get_solution), ("window_key", notes.window_key)):
        t0 = time.perf_counter()
        answers[name] = [fn(f, start, 25.0, tr) for f, start, tr in windows]
        totals[name] = time.perf_counter() - t0
    differ = sum(a != b for a, b in zip(*answers.values(), strict=True))
    ratio = totals["getSolution"] / totals["window_key"]
    print(
        f"  keys of {len(windows)} windows: getSolution {totals['getSolution']:.2f} s, window_key "
        f"{totals['window_key']:.2f} s ({ratio:.1f}x faster), {differ} differ"
    )


def timed(fn, piece: Piece) -> tuple[float, notes.Flattened | str]:
    t0 = time.perf_counter()
    try:
        out: notes.Flattened | str = fn(piece)
    except Exception as err:  # a piece that fails must fail both ways
        out = f"{type(err).__name__}: {err}"
    return time.perf_counter() - t0, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="quick", choices=["small", "quick", "full"])
    parser.add_argument("--role", default="genres", choices=["genres", "captions", "all"])
    parser.add_argument("--pieces", type=int, default=200, help="evenly spaced sample of the plan's pieces")
    args = parser.parse_args()
    pieces = [p for p, role, _ in plan(args.size, 0) if args.role in ("all", role)]
    pieces = pieces[:: max(1, len(pieces) // args.pieces)][: args.pieces]
    tempfile.tempdir = tempfile.mkdtemp(
        prefix="bench-parse-"
    )  # music21's scratch folder: empty, as on a new machine
    totals = {"music21 defaults": 0.0, "flatten_piece": 0.0}
    differ, flats = [], []
    for i, piece in enumerate(pieces):
        order = [("music21 defaults", music21_defaults), ("flatten_piece", notes.flatten_piece)]
        results = {}
        for name, fn in order if i % 2 else order[::-1]:
            secs, results[name] = timed(fn, piece)
            totals[name] += secs
        a, b = results.values()
        flats += [b] if not isinstance(b, str) else []
        if not (a == b if isinstance(a, str) or isinstance(b, str) else same(a, b)):
            differ.append(piece.key)
    base, new = totals["music21 defaults"], totals["flatten_piece"]
    print(f"{len(pieces)} {args.role} pieces of the {args.size} build, one process")
    print(f"  music21 defaults  {base:7.1f} s")
    print(f"  flatten_piece     {new:7.1f} s   {base / new:.2f}x faster")
    print(f"  pieces whose notes differ: {len(differ)} {differ[:5]}")
    bench_keys(flats)


if __name__ == "__main__":
    main()
