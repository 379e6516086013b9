"""Captioning against a real local OpenAI-compatible server, through the real `openai` client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from llm_server import (
    CONTENT_FILTERED,
    EMPTY_CHOICES,
    FOUR_SENTENCES,
    MALFORMED_JSON,
    TWO_SENTENCES,
    FakeLLMServer,
    body,
    context_too_long,
    hang,
    rate_limited,
    refusal,
    server_error,
)

from music_clip_data.captioning import (
    CaptioningError,
    CaptionInput,
    CaptionSettings,
    _retry_after_s,
    cache_key,
    caption_many,
)
from music_clip_data.prompts import THESIS_PROMPT, resolve_prompt
from music_clip_data.sentences import split_sentences

REPO = Path(__file__).resolve().parents[1]
API_KEY = "sk-test-do-not-store-4f1c9e"


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as s:
        yield s


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUSIC_CLIP_TEST_KEY", API_KEY)


def settings(server: FakeLLMServer, cache: Path, **overrides) -> CaptionSettings:
    values = dict(
        base_url=server.base_url,
        model="test-model",
        api_key_env="MUSIC_CLIP_TEST_KEY",
        temperature=0.7,
        concurrency=4,
        max_retries=3,
        timeout_s=2.0,
        cache_dir=cache,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        progress=False,
    )
    values.update(overrides)
    return CaptionSettings(**values)


def song(i: int, genres: list[str] | None = None) -> CaptionInput:
    return CaptionInput(f"track-{i}", f"lyrics of song number {i}, la la la", genres or [])


def prompt_of(item: CaptionInput, prompt: str = "thesis") -> str:
    return resolve_prompt(prompt).render(item.lyrics, item.genres)


# -- prompts and sentences --------------------------------------------------------------------------------


def test_thesis_prompt_is_fig_13_verbatim() -> None:
    assert THESIS_PROMPT == (
        "Write one sentence summarizing the sentiment of the lyrics of the song below.\n"
        "Write a second sentence summarizing the theme of the song.\n"
        "And a third one summarizing sentiment and genre.\n"
        "Genre is [{genre}].\n"
        'The song\'s lyrics are: " {lyrics} " '
    )
    spec = resolve_prompt("thesis")
    assert spec.render("Hey {genre} Jude", []).endswith(
        'Genre is [].\nThe song\'s lyrics are: " Hey {genre} Jude " '
    )
    assert "Genre is [rock, indie].\n" in spec.render("x", ["rock", "indie"])


def test_lyrics_comment_prompt_keeps_three_or_four_sentences_as_three() -> None:
    spec = resolve_prompt("lyrics-comment")
    assert spec.template.startswith("Please comment on the given lyrics in 3-4 sentences.")
    assert spec.fit(["a.", "b.", "c."]) == ["a.", "b.", "c."]
    assert spec.fit(["a.", "b.", "c.", "d."]) == ["a.", "b.", "c. d."]
    assert spec.fit(["a.", "b."]) is None and spec.fit(["a."] * 5) is None
    assert resolve_prompt("thesis").fit(["a.", "b.", "c.", "d."]) is None


def test_custom_prompt_needs_lyrics() -> None:
    with pytest.raises(ValueError, match="lyrics"):
        resolve_prompt("Describe the genre {genre} in three sentences.")
    assert resolve_prompt("Three sentences on: {lyrics} ({genre})").render("a}{b", ["pop"]) == (
        "Three sentences on: a}{b (pop)"
    )


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            'Mr. Smith sings of 3.5 heartbreaks, e.g. lost love. It asks "Why me?" she says. It is U.S. rock.',
            [
                "Mr. Smith sings of 3.5 heartbreaks, e.g. lost love.",
                'It asks "Why me?" she says.',
                "It is U.S. rock.",
            ],
        ),
        (
            "1. The mood is sad.\n2. The theme is loss.\n3. Genre: rock.",
            ["The mood is sad.", "The theme is loss.", "Genre: rock."],
        ),
        (
            'He said "I am done." Then he left... It is pop!',
            ['He said "I am done."', "Then he left...", "It is pop!"],
        ),
        ("One sentence only at 120 b.p.m. and no more.", ["One sentence only at 120 b.p.m. and no more."]),
    ],
)
def test_split_sentences(answer: str, expected: list[str]) -> None:
    assert split_sentences(answer) == expected


# -- the LLM path -----------------------------------------------------------------------------------------


def test_answers_are_cached_asked_once_and_never_store_the_key(server: FakeLLMServer, tmp_path: Path) -> None:
    items = [song(i, ["rock"]) for i in range(6)] + [CaptionInput("dup", song(0).lyrics, ["rock"])]
    results = caption_many(items, settings(server, tmp_path))
    assert [r.key for r in results] == [i.key for i in items]
    assert {r.status for r in results} == {"new"} and all(r.caption_source == "llm" for r in results)
    assert all(len(r.sentences) == 3 and r.raw and r.error is None for r in results)
    assert results[0].prompt == THESIS_PROMPT and results[0].model == "test-model"
    assert server.total_requests == 6  # the duplicate lyrics were asked once
    assert {r["model"] for r in server.requests} == {"test-model"}
    assert {r["temperature"] for r in server.requests} == {0.7}
    assert {r["authorization"] for r in server.requests} == {
        f"Bearer {API_KEY}"
    }  # the key did reach the server

    files = list(tmp_path.rglob("*.json"))
    assert len(files) == 6
    assert not any(API_KEY in f.read_text() for f in files)
    again = caption_many(items, settings(server, tmp_path))
    assert {r.status for r in again} == {"cached"} and server.total_requests == 6
    assert [r.sentences for r in again] == [r.sentences for r in results]
    # Another temperature is another question.
    caption_many(items[:1], settings(server, tmp_path, temperature=0.0))
    assert server.total_requests == 7


ODD_BODIES = [
    '{"choices": [{"foo": 1}]}',
    '{"choices": "x"}',
    "[]",
    "null",
    '{"choices": [{"message": null}]}',
]


@pytest.mark.parametrize(
    "fault", [MALFORMED_JSON, EMPTY_CHOICES, server_error(500), server_error(503), *map(body, ODD_BODIES)]
)
def test_transient_faults_are_retried(server: FakeLLMServer, tmp_path: Path, fault) -> None:
    items = [song(i) for i in range(3)]
    server.script_for("number 1,", fault, fault)
    results = caption_many(items, settings(server, tmp_path))
    assert [r.status for r in results] == ["new"] * 3
    assert server.counts[prompt_of(items[1])] == 3
    assert server.counts[prompt_of(items[0])] == server.counts[prompt_of(items[2])] == 1


def test_rate_limit_honours_retry_after(server: FakeLLMServer, tmp_path: Path) -> None:
    server.script_for("number 0,", rate_limited("1"))
    start = time.monotonic()
    [result] = caption_many([song(0)], settings(server, tmp_path))
    assert result.status == "new" and server.total_requests == 2
    assert time.monotonic() - start >= 1.0  # backoff alone would have waited ~0.01 s


def test_hang_past_timeout_is_retried(server: FakeLLMServer, tmp_path: Path) -> None:
    server.script_for("number 0,", hang(10))
    start = time.monotonic()
    [result] = caption_many([song(0)], settings(server, tmp_path, timeout_s=0.3))
    assert result.status == "new" and server.total_requests == 2
    assert time.monotonic() - start < 5


def test_wrong_sentence_count_is_asked_again_then_recorded_failed(
    server: FakeLLMServer, tmp_path: Path
) -> None:
    items = [song(0), song(1)]
    server.script_for("number 0,", TWO_SENTENCES)  # once wrong, then good
    server.script_for("number 1,", TWO_SENTENCES, FOUR_SENTENCES, TWO_SENTENCES)  # wrong every time
    first, second = caption_many(items, settings(server, tmp_path, answer_attempts=3))
    assert first.status == "new" and server.counts[prompt_of(items[0])] == 2
    assert second.status == "failed" and second.sentences is None
    assert (
        second.raw == "The song is sad. It is about loss." and "expected 3 sentences, got 2" in second.error
    )
    [record] = [json.loads(f.read_text()) for f in tmp_path.rglob("*.json") if "failed" in f.read_text()]
    assert record["raw"] == second.raw and record["requests"] == 3

    # A failed item is asked again on the next run; finished ones are not.
    again = caption_many(items, settings(server, tmp_path))
    assert [r.status for r in again] == ["cached", "new"]
    assert server.counts[prompt_of(items[0])] == 2 and server.counts[prompt_of(items[1])] == 4


def test_lyrics_comment_four_sentences_become_three(server: FakeLLMServer, tmp_path: Path) -> None:
    server.script(FOUR_SENTENCES)
    [r] = caption_many([song(0)], settings(server, tmp_path, prompt="lyrics-comment"))
    assert r.sentences == [
        "The song is sad.",
        "It is about loss.",
        "It sounds like rock. The chorus lifts it up.",
    ]
    assert r.prompt.startswith("Please comment on the given lyrics in 3-4 sentences.")


def test_exhausted_retries_and_bad_requests_fail_only_their_item(
    server: FakeLLMServer, tmp_path: Path
) -> None:
    items = [song(0), song(1), song(2)]
    server.script_for("number 0,", *[server_error(500)] * 10)
    server.script_for("number 1,", server_error(400))
    results = caption_many(items, settings(server, tmp_path, max_retries=2))
    assert [r.status for r in results] == ["failed", "failed", "new"]
    assert "gave up after 3 requests" in results[0].error and "HTTP 500" in results[0].error
    assert "HTTP 400" in results[1].error
    assert [server.counts[prompt_of(i)] for i in items] == [3, 1, 1]
    assert not any(API_KEY in (r.error or "") for r in results)


def test_auth_error_stops_the_run(server: FakeLLMServer, tmp_path: Path) -> None:
    server.script(server_error(401))
    with pytest.raises(CaptioningError, match="401"):
        caption_many([song(0)], settings(server, tmp_path, concurrency=1))


@pytest.mark.parametrize("answer", [refusal(), refusal(with_content=False), CONTENT_FILTERED])
def test_refusals_and_filtered_answers_are_never_captions(
    server: FakeLLMServer, tmp_path: Path, answer
) -> None:
    items = [song(0), song(1)]
    server.script_for("number 0,", answer)
    refused, fine = caption_many(items, settings(server, tmp_path))
    assert (refused.status, refused.sentences) == ("failed", None), refused.sentences
    assert refused.error.startswith("refused: ") and fine.status == "new"
    assert server.counts[prompt_of(items[0])] == 1  # a refusal is an answer: no retry pays for it again


def test_context_too_long_is_asked_with_half_the_lyrics_then_a_permanent_failure(
    server: FakeLLMServer, tmp_path: Path
) -> None:
    long = [CaptionInput(f"long-{i}", f"song {i} " + "la " * 500, []) for i in range(2)]
    server.script_for("song 0 ", context_too_long(400))  # fits once halved
    server.script_for("song 1 ", context_too_long(413), context_too_long(400))  # never fits
    fits, never = caption_many(long, settings(server, tmp_path))
    assert fits.status == "new" and len(fits.sentences) == 3
    sent = [r["prompt"] for r in server.requests if "song 0 " in r["prompt"]]
    assert len(sent) == 2 and len(sent[1]) < len(sent[0]) - 700  # the second ask had half the lyrics
    assert (never.status, never.sentences) == ("failed", None) and never.error.startswith("context too long")
    assert server.count("song 1 ") == 2

    again = caption_many(long, settings(server, tmp_path))  # the permanent failure is not paid for again
    assert [r.status for r in again] == ["cached", "failed"] and again[1].error == never.error
    assert server.count("song 0 ") == 2 and server.count("song 1 ") == 2


def test_max_lyrics_chars_cuts_what_is_sent(server: FakeLLMServer, tmp_path: Path) -> None:
    item = CaptionInput("long", "start " + "la " * 500 + "THE END", [])
    [result] = caption_many([item], settings(server, tmp_path, max_lyrics_chars=120))
    [request] = server.requests
    assert result.status == "new" and "start la" in request["prompt"] and "THE END" not in request["prompt"]
    assert len(request["prompt"]) < len(THESIS_PROMPT) + 120


def test_auth_error_ends_the_retries_of_every_worker(server: FakeLLMServer, tmp_path: Path) -> None:
    # The 401 song goes first: its request must be in flight before a 429 sets the shared pause, or (on a
    # loaded machine) its worker would wait out the pause before ever asking.
    items = [song(3), *(song(i) for i in range(3))]
    for i in range(3):  # three workers wait out a long Retry-After ...
        server.script_for(f"number {i},", rate_limited("60"))
    server.script_for(
        "number 3,", server_error(401, after_s=0.5)
    )  # ... when the fourth learns the key is bad
    start = time.monotonic()
    with pytest.raises(CaptioningError, match="401"):
        caption_many(items, settings(server, tmp_path, concurrency=4, timeout_s=2.0))
    assert (
        time.monotonic() - start < 2.0 + 2.0 + 2.0
    )  # request timeout + 2 s, plus slack for a loaded machine
    # Nobody asked again after the stop. How many rate-limited songs asked before the first 429 paused the
    # others depends on the machine's load; at least one did, so a 60 s pause was cut short by the 401.
    asked = [server.count(f"number {i},") for i in range(3)]
    assert server.count("number 3,") == 1 and max(asked) == 1 and sum(asked) >= 1
    assert server.total_requests == 1 + sum(asked)


def test_missing_api_key_is_named(server: FakeLLMServer, tmp_path: Path) -> None:
    with pytest.raises(CaptioningError, match="NO_SUCH_KEY_VAR"):
        caption_many([song(0)], settings(server, tmp_path, api_key_env="NO_SUCH_KEY_VAR"))
    assert server.total_requests == 0


# -- templates --------------------------------------------------------------------------------------------


def test_template_captions_without_endpoint(tmp_path: Path) -> None:
    given = CaptionInput("a", "", [], ["One.", "Two.", "Three."])
    generic = CaptionInput(
        "b",
        "words",
        ["pop"],
        None,
        {"title": "Hey", "artist": "Ann", "genre": "pop", "tags": ["pop", "pop", "synth"]},
    )
    bare = CaptionInput("c")
    results = caption_many(
        [given, generic, bare], CaptionSettings(base_url=None, cache_dir=tmp_path, progress=False)
    )
    assert [r.sentences for r in results] == [
        ["One.", "Two.", "Three."],
        ['"Hey" by Ann is a pop track.', "It is tagged pop, synth.", "It is a song with lyrics."],
        ["This is a piece of music.", "It has no descriptive tags.", "No lyrics are known for it."],
    ]
    assert {(r.caption_source, r.status, r.model, r.raw) for r in results} == {
        ("template", "template", None, None)
    }
    with pytest.raises(ValueError, match="three|3"):
        caption_many([CaptionInput("d", template_sentences=["Only one."])], CaptionSettings(progress=False))


def test_items_without_lyrics_use_the_template_even_with_an_endpoint(
    server: FakeLLMServer, tmp_path: Path
) -> None:
    results = caption_many([CaptionInput("inst", "  ", ["jazz"]), song(1)], settings(server, tmp_path))
    assert [r.status for r in results] == ["template", "new"] and server.total_requests == 1


# -- crash and resume -------------------------------------------------------------------------------------

CHILD = """
import sys
from music_clip_data.captioning import CaptionInput, CaptionSettings, caption_many
base_url, cache, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
items = [CaptionInput(f"track-{i}", f"lyrics of song number {i}, la la la", []) for i in range(n)]
caption_many(items, CaptionSettings(base_url=base_url, model="test-model", api_key_env="MUSIC_CLIP_TEST_KEY",
    temperature=0.7, concurrency=2, cache_dir=cache, progress=False))
"""


def test_sigkill_midway_then_rerun_asks_only_for_the_rest(tmp_path: Path) -> None:
    n = 40
    with FakeLLMServer(latency_s=0.1) as server:  # the child needs ~2 s for all 40
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, server.base_url, str(tmp_path), str(n)],
            cwd=REPO,
            env={**os.environ, "MUSIC_CLIP_TEST_KEY": API_KEY},
        )
        deadline = time.monotonic() + 60
        while (
            len(list(tmp_path.rglob("*.json"))) < 8 and child.poll() is None and time.monotonic() < deadline
        ):
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL, "the child finished before it could be killed"
        finished = {f.stem for f in tmp_path.rglob("*.json")}
        assert 8 <= len(finished) < n

        items = [song(i) for i in range(n)]
        results = caption_many(items, settings(server, tmp_path))
        assert all(r.status in ("new", "cached") and len(r.sentences) == 3 for r in results)  # nothing lost
        keys = [cache_key(prompt_of(i), "test-model", 0.7) for i in items]
        counts = [server.counts[prompt_of(i)] for i in items]
        for item, key, result, asked in zip(items, keys, results, counts):
            if key in finished:
                assert (result.status, asked) == ("cached", 1), (
                    item.key
                )  # finished before the kill: never again
            else:
                assert result.status == "new" and 1 <= asked <= 2, item.key
        assert sum(c == 2 for c in counts) <= 2  # only the child's in-flight requests (concurrency 2) repeat


STOPPABLE_CHILD = """
import sys
from music_clip_data.captioning import CaptionInput, CaptionSettings, caption_many
items = [CaptionInput(f"track-{i}", f"lyrics of song number {i}, la la la", []) for i in range(4)]
caption_many(items, CaptionSettings(base_url=sys.argv[1], model="test-model", api_key_env="MUSIC_CLIP_TEST_KEY",
    concurrency=4, timeout_s=float(sys.argv[3]), cache_dir=sys.argv[2], progress=False))
"""


def test_ctrl_c_stops_within_the_request_timeout_plus_two_seconds(tmp_path: Path) -> None:
    timeout_s = 2.0
    with FakeLLMServer() as server:
        server.script_for("number 0,", hang(60))  # in flight when Ctrl-C comes: ends by the timeout
        for i in (1, 2, 3):
            server.script_for(f"number {i},", rate_limited("60"))  # in their retry loops' wait
        child = subprocess.Popen(
            [sys.executable, "-c", STOPPABLE_CHILD, server.base_url, str(tmp_path), str(timeout_s)],
            cwd=REPO,
            env={**os.environ, "MUSIC_CLIP_TEST_KEY": API_KEY},
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while server.total_requests < 4 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert server.total_requests == 4, "the child never sent its four requests"
            time.sleep(0.2)  # the 429s have arrived: three workers are waiting out Retry-After
            child.send_signal(signal.SIGINT)
            stopped = time.monotonic()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pytest.fail("Ctrl-C did not stop the captioning run within 30 s")
            elapsed = time.monotonic() - stopped
        finally:
            child.kill()
            child.wait()
    assert b"KeyboardInterrupt" in child.stderr.read()
    assert elapsed < timeout_s + 2.0 + 1.5, elapsed  # 1.5 s slack for a loaded machine
    assert server.total_requests == 4


def test_connection_refused_is_retried_then_recorded(tmp_path: Path) -> None:
    with FakeLLMServer() as gone:
        base_url = gone.base_url
    [r] = caption_many([song(0)], settings(gone, tmp_path, base_url=base_url, max_retries=1))
    assert r.status == "failed" and "gave up after 2 requests" in r.error and "connection error" in r.error


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # a date in the past: now
        ({"retry-after": "soon"}, None),
        ({}, None),
        ({"retry-after": "99999"}, 900.0),  # capped so a bogus header cannot stall a build
    ],
)
def test_retry_after_parsing(headers: dict[str, str], seconds: float | None) -> None:
    assert _retry_after_s(headers) == seconds
