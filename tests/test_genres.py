"""Thesis Table 2 mapping: the thesis' own rows, the tie rule and exclusion."""

import pytest

from music_clip_data.genres import THESIS_MAIN_GENRES, genre_counts, map_to_main_genre

TABLE_2 = [
    ("Arctic Monkeys", "garage rock, modern rock, permanent wave, rock, sheffield indie", "rock"),
    (
        "Black Sabbath",
        "album rock, alternative metal, birmingham metal, classic rock, hard rock, metal, rock, stoner rock, "
        "uk doom metal",
        "rock",
    ),
    ("50 Cent", "east coast hip hop, gangster rap, hip hop, pop rap, queens hip hop, rap", "hip hop"),
    ("David Luning", "country", "country"),
]


@pytest.mark.parametrize(("artist", "labels", "expected"), TABLE_2)
def test_thesis_table_2_rows(artist: str, labels: str, expected: str) -> None:
    assert map_to_main_genre([t.strip() for t in labels.split(",")]) == expected, artist


def test_counts_names_inside_tags() -> None:
    counts = genre_counts(
        [
            "album rock",
            "alternative metal",
            "birmingham metal",
            "classic rock",
            "hard rock",
            "metal",
            "rock",
            "stoner rock",
            "uk doom metal",
        ]
    )
    assert counts == {"rock": 5, "metal": 4}
    assert genre_counts(["k-pop", "Hip-Hop", "metalcore"]) == {"pop": 1, "hip hop": 1, "metal": 1}
    assert genre_counts(["hip hop"])["pop"] == 0  # "hop" is not "pop"; no match inside a word


def test_tie_goes_to_the_head_of_the_tag_then_list_order() -> None:
    assert map_to_main_genre(["indie rock"]) == "rock"
    assert map_to_main_genre(["pop punk"]) == "punk"
    assert map_to_main_genre(["rock", "pop"]) == "pop"  # heads tie 1:1 too → first in the main-genre list
    assert THESIS_MAIN_GENRES.index("pop") < THESIS_MAIN_GENRES.index("rock")


def test_no_main_genre_is_none_and_list_is_configurable() -> None:
    assert map_to_main_genre(["blues", "electric blues", "soul"]) is None
    assert map_to_main_genre([]) is None
    assert map_to_main_genre(["electric blues", "blues rock"], ["blues", "jazz"]) == "blues"
