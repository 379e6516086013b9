"""Stage 3, assign roles and split: labels (thesis Table 2), captions vs genres by group, the genres test split."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from music_clip_data.genres import map_to_main_genre
from music_clip_data.track import Track
from music_clip_data.writer import split_roles, test_mask

from .context import BuildContext
from .decode_stage import Decoded


@dataclass
class Assigned:
    """Which kept track serves which config, its label, and which genres tracks are in the test split."""

    labels: dict[str, str | None]
    caption_set: list[tuple[Track, dict]]
    genre_set: list[tuple[Track, dict]]
    in_test: np.ndarray  # one flag per genre_set track
    genre_names: list[str]
    no_main_genre: int = 0
    labels_from_tags: int = 0
    skipped: list[dict] = field(default_factory=list)  # kept tracks with no genre label for `genres`


def per_clip(values: list, counts: list[int]) -> list:
    """Each track's value once per clip: the grouped splits then count clips, not tracks."""
    return [v for v, n in zip(values, counts, strict=True) for _ in range(n)]


def label_tracks(decoded: Decoded, main_genres: list[str]) -> tuple[dict[str, str | None], int, int]:
    """A label given by the source wins; else thesis Table 2 majority over the raw tags. Also counts the tracks
    whose tags hold no main genre, and those labelled from tags."""
    labels: dict[str, str | None] = {}
    no_main_genre = labels_from_tags = 0
    for track, _ in decoded.kept:
        label = track.genre or (map_to_main_genre(track.tags, main_genres) if track.tags else None)
        labels[track.track_id] = label
        no_main_genre += int(label is None and bool(track.tags))
        labels_from_tags += int(track.genre is None and label is not None)
    return labels, no_main_genre, labels_from_tags


def assign(ctx: BuildContext, decoded: Decoded) -> Assigned:
    """Roles: the source's, else by group (never splitting a group), per class; then the grouped, stratified
    genres test split."""
    args = ctx.args
    labels, no_main_genre, labels_from_tags = label_tracks(decoded, args.main_genres)
    free = [(t, s) for t, s in decoded.kept if t.role is None]
    free_rows = [decoded.n_rows(t) for t, _ in free]
    group_roles = split_roles(
        per_clip([labels[t.track_id] for t, _ in free], free_rows),
        per_clip([t.group_id for t, _ in free], free_rows),
        args.captions_fraction,
        args.seed,
    )
    assigned = Assigned(labels, [], [], np.zeros(0, bool), [], no_main_genre, labels_from_tags)
    for track, status in decoded.kept:
        role = track.role or group_roles[track.group_id]
        if role == "captions":
            assigned.caption_set.append((track, status))
        elif labels[track.track_id] is None:
            why = "no main genre in its tags" if track.tags else "no genre label"
            assigned.skipped.append(
                {"track_id": track.track_id, "path": str(track.audio_path), "reason": f"{why} (genres)"}
            )
        else:
            assigned.genre_set.append((track, status))
    assigned.in_test = genre_test_flags(assigned, decoded, args.test_size, args.seed)
    present = {labels[t.track_id] for t, _ in assigned.genre_set}
    assigned.genre_names = [g for g in args.main_genres if g in present] + sorted(
        present - set(args.main_genres)
    )
    return assigned


def genre_test_flags(assigned: Assigned, decoded: Decoded, test_size: float, seed: int) -> np.ndarray:
    """One flag per genres track: the test split is drawn over clips, whole groups at a time."""
    genre_set = assigned.genre_set
    genre_rows = [decoded.n_rows(t) for t, _ in genre_set]
    clip_in_test = test_mask(
        per_clip([assigned.labels[t.track_id] for t, _ in genre_set], genre_rows),
        per_clip([t.group_id for t, _ in genre_set], genre_rows),
        test_size,
        seed,
    )
    return clip_in_test[np.cumsum([0, *genre_rows[:-1]]).astype(int)] if genre_set else clip_in_test
