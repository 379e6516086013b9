"""LLM pseudo-captions (thesis Fig. 13): any OpenAI-compatible endpoint, cached on disk, resumable.

`caption_many` asks each distinct prompt once, with bounded concurrency and its own retry loop: 429 / 5xx /
408 / timeouts / connection errors / malformed bodies are retried with exponential backoff and jitter,
honouring `Retry-After`. The `openai` client's retries are off because they fall short here: they give up on a
`Retry-After` above 60 s, never retry a malformed 200, cannot share one pause across workers, and sleep where
nothing can cut them short, so a Ctrl-C or a 401 would wait for every worker's retries; ours wait on an event
that a stop sets, so a stopped run ends within the request timeout.

An answer whose sentence count is wrong is asked again, then recorded as failed with its raw text. A refusal
(`message.refusal`, `finish_reason` "content_filter") is never a caption: it is recorded as failed. A prompt
past the model's context (400 / 413) is asked once more with its lyrics halved, then recorded as a permanent
failure that later runs do not pay for again. Every final answer is one JSON file under `cache_dir`, written
atomically, so a killed run re-run asks only for what is missing or failed (not permanent). With no endpoint,
captions come from the track's metadata by template.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import random
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import openai
from tqdm.auto import tqdm

from music_clip_common.files import atomic_write_text
from music_clip_data.descriptors import in_words
from music_clip_data.prompts import N_SENTENCES, PROMPTS, PromptSpec, metadata_text, resolve_prompt
from music_clip_data.sentences import split_sentences

__all__ = [
    "PROMPTS",
    "CaptionInput",
    "CaptionResult",
    "CaptionSettings",
    "CaptioningError",
    "caption_many",
    "template_caption",
]

logger = logging.getLogger(__name__)

Status = Literal["new", "cached", "failed", "template"]
_RETRY_STATUS = {408, 409, 429}  # plus every 5xx
_FATAL_STATUS = {401, 403, 404}  # wrong key / URL / model: no item can succeed, stop the run
_MAX_RETRY_AFTER_S = 900.0  # honour Retry-After up to this, so a bogus header cannot stall a build forever
_CACHE_VERSION = 1
_TOO_LONG_STATUS = {400, 413}  # 413 always; 400 when its message says the prompt is past the context window
_TOO_LONG_MESSAGE = re.compile(r"context|too (long|large)|maximum .*(length|tokens)|reduce the length", re.I)


@dataclass
class CaptionSettings:
    base_url: str | None = None  # None: template captions, no requests
    model: str | None = "gpt-3.5-turbo"  # the thesis' model
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable, never stored
    prompt: str = "thesis"  # "thesis" | "lyrics-comment" | custom template with {lyrics} (and {genre})
    temperature: float | None = None  # None: not sent (the server's default; the thesis does not state one)
    concurrency: int = 16  # requests in flight
    max_retries: int = 6  # per request, for 429 / 5xx / timeouts / connection errors / malformed bodies
    timeout_s: float = 60.0  # per request
    cache_dir: Path | None = None  # None: $XDG_CACHE_HOME/music_clip/captions
    answer_attempts: int = 3  # asks for an answer with the expected sentence count before recording a failure
    backoff_base_s: float = 1.0  # first retry waits ~this, doubling per retry
    backoff_max_s: float = 60.0
    max_lyrics_chars: int | None = None  # lyrics are cut to this many characters before they are sent
    progress: bool = True  # tqdm bar


@dataclass
class CaptionInput:
    key: str  # the caller's id (track_id); results come back in input order with the same key
    lyrics: str = ""
    genres: list[str] = field(default_factory=list)  # rendered as `[a, b]`, `[]` when unknown (thesis)
    template_sentences: list[str] | None = None  # the source's own three sentences for the template path
    # title, artist, genre, tags (the generic template), album, date, descriptors (the template and the LLM)
    facts: dict[str, Any] = field(default_factory=dict)
    # False: the measured key and tempo join the source's sentences too
    sentences_state_key_and_tempo: bool = True


@dataclass
class CaptionResult:
    key: str
    sentences: list[str] | None  # three sentences, None when failed
    raw: str | None  # the model's last answer (None for templates or when no answer arrived)
    caption_source: Literal["llm", "template"]
    status: Status
    prompt: str | None  # the prompt template (placeholders unfilled); None for templates
    model: str | None
    temperature: float | None
    error: str | None = None


class CaptioningError(RuntimeError):
    """A configuration problem that would fail every item (missing key, 401/403/404)."""


def caption_many(inputs: list[CaptionInput], settings: CaptionSettings) -> list[CaptionResult]:
    """One result per input, in order. Items without lyrics get a template caption (nothing to comment on)."""
    spec = resolve_prompt(settings.prompt)
    results: list[CaptionResult | None] = [None] * len(inputs)
    asked: dict[str, list[int]] = {}  # cache key -> input positions: identical prompts are asked once
    rendered: dict[str, _Question] = {}
    for i, item in enumerate(inputs):
        if settings.base_url is None or (not item.lyrics.strip() and "{lyrics}" in spec.template):
            results[i] = _template_result(item)
            continue
        lyrics = item.lyrics[: settings.max_lyrics_chars] if settings.max_lyrics_chars else item.lyrics
        metadata = metadata_text(item.facts)
        prompt = spec.render(lyrics, item.genres, metadata)
        key = cache_key(prompt, settings.model, settings.temperature)
        asked.setdefault(key, []).append(i)
        rendered[key] = _Question(prompt, lyrics, item.genres, metadata)
    if asked:
        for key, answer in _LLMRun(spec, settings).run(rendered).items():
            for i in asked[key]:
                results[i] = _llm_result(inputs[i].key, answer, spec, settings)
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def cache_key(prompt: str, model: str | None, temperature: float | None) -> str:
    """sha256 of what decides the answer: the filled prompt, the model, the temperature (never the key)."""
    return hashlib.sha256(json.dumps([prompt, model, temperature]).encode()).hexdigest()


def template_caption(item: CaptionInput) -> list[str]:
    """The source's own three sentences, else three from real metadata (no invented content); either way with
    the words the measured descriptors earn (`descriptors.in_words`). A source whose sentences state key and
    tempo from what it knows (the score, the generation prompt) gets only texture words added; the others get
    the measured key and tempo too."""
    measured = item.facts.get("descriptors") or {}
    if item.template_sentences is not None:
        sentences = [s.strip() for s in item.template_sentences]
        if len(sentences) != N_SENTENCES or not all(sentences):
            raise ValueError(f"{item.key}: template_sentences must be {N_SENTENCES} non-empty sentences")
        words = in_words(measured, with_key_and_tempo=not item.sentences_state_key_and_tempo)
        return sentences[:-1] + [f"{sentences[-1]} It is {words}."] if words else sentences
    facts = item.facts
    title, artist = str(facts.get("title") or "").strip(), str(facts.get("artist") or "").strip()
    tags = [str(t) for t in facts.get("tags") or [] if str(t).strip()]
    genre = str(facts.get("genre") or (item.genres[0] if item.genres else "") or "").strip()
    what = in_words(measured, noun=f"{genre} track" if genre else "track")
    what = what or (f"a {genre} track" if genre else "a piece of music")
    if title and artist:
        first = f'"{title}" by {artist} is {what}.'
    elif title:
        first = f'"{title}" is {what}.'
    else:
        first = f"This is {what}{f' by {artist}' if artist else ''}."
    second = f"It is tagged {', '.join(dict.fromkeys(tags))}." if tags else "It has no descriptive tags."
    third = "It is a song with lyrics." if item.lyrics.strip() else "No lyrics are known for it."
    return [first, second, third]


def _template_result(item: CaptionInput) -> CaptionResult:
    return CaptionResult(item.key, template_caption(item), None, "template", "template", None, None, None)


def _llm_result(key: str, answer: dict[str, Any], spec: PromptSpec, s: CaptionSettings) -> CaptionResult:
    return CaptionResult(
        key,
        answer.get("sentences"),
        answer.get("raw"),
        "llm",
        answer["run_status"],
        spec.template,
        s.model,
        s.temperature,
        answer.get("error"),
    )


class AnswerCache:
    """One JSON file per prompt key; a file appears complete or not at all (an atomic write)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(key).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None  # missing or not ours: ask again

    def put(self, key: str, record: dict[str, Any]) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record, ensure_ascii=False))  # its temp name never matches *.json


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "music_clip" / "captions"


@dataclass(frozen=True)
class _Question:
    prompt: str
    lyrics: str  # kept to ask again with half of them when the prompt is past the context window
    genres: list[str]
    metadata: str = ""


class _Transient(Exception):
    """A request failure worth retrying."""

    def __init__(self, reason: str, delay_s: float | None = None) -> None:
        super().__init__(reason)
        self.delay_s = delay_s  # the server's Retry-After, if it sent one


class _Failed(Exception):
    """No answer for this item: retries spent, or a status no retry fixes."""

    def __init__(self, reason: str, requests: int) -> None:
        super().__init__(reason)
        self.requests = requests


class _TooLong(_Failed):
    """400 / 413: the prompt is past the model's context window."""


class _Refused(Exception):
    """The model refused or a content filter answered: never a caption."""


class _Stopped(Exception):
    """The run is stopping (Ctrl-C, a fatal error in another worker): give up without storing anything."""


class _Pause:
    """A shared 'not before' time: after a 429 with Retry-After, no worker sends until it has passed."""

    def __init__(self, stop: threading.Event) -> None:
        self._until = 0.0
        self._lock = threading.Lock()
        self._stop = stop

    def extend(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)

    def wait(self) -> None:
        while (left := self._until - time.monotonic()) > 0:
            sleep_or_stop(self._stop, left)


def sleep_or_stop(stop: threading.Event, seconds: float) -> None:
    """Sleep, or raise `_Stopped` as soon as the run is stopping."""
    if stop.wait(seconds):
        raise _Stopped


@contextmanager
def _ctrl_c_sets(stop: threading.Event, interrupted: threading.Event) -> Iterator[None]:
    """Ctrl-C sets both events instead of raising where it lands: a KeyboardInterrupt raised while the main
    thread holds a future's lock (inside `as_completed`) can leave it held, and then `shutdown(wait=True)` waits
    forever for workers that cannot finish their futures. The run raises KeyboardInterrupt once the pool is shut."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum: int, frame: object) -> None:
        interrupted.set()
        stop.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _LLMRun:
    def __init__(self, spec: PromptSpec, settings: CaptionSettings) -> None:
        self.spec = spec
        self.s = settings
        self.cache = AnswerCache(Path(settings.cache_dir) if settings.cache_dir else default_cache_dir())
        self.stop = threading.Event()  # set on Ctrl-C or a fatal error: every worker ends its retries
        self.pause = _Pause(self.stop)
        self._api_key = os.environ.get(settings.api_key_env, "")
        if not self._api_key:
            raise CaptioningError(
                f"set {settings.api_key_env} (any non-empty value for a server that does not check keys)"
            )
        if not settings.model:
            raise CaptioningError("CaptionSettings.model is required with a base_url")

    def run(self, prompts: dict[str, _Question]) -> dict[str, dict[str, Any]]:
        """Cache key -> answer record (+ run_status) for every prompt."""
        answers: dict[str, dict[str, Any]] = {}
        todo = []
        for key in prompts:
            record = self.cache.get(key)
            if record is None or record.get("version") != _CACHE_VERSION:
                todo.append(key)  # never asked
            elif record.get("status") == "ok":
                answers[key] = {**record, "run_status": "cached"}
            elif record.get("permanent"):
                answers[key] = {**record, "run_status": "failed"}  # no retry can fix it: not paid again
            else:
                todo.append(key)  # failed last time: ask again
        counts = Counter(cached=len(answers))
        bar = tqdm(
            total=len(prompts), initial=len(answers), desc="captions (llm)", disable=not self.s.progress
        )
        client = openai.OpenAI(
            base_url=self.s.base_url, api_key=self._api_key, max_retries=0, timeout=self.s.timeout_s
        )
        pool = ThreadPoolExecutor(max_workers=max(1, min(self.s.concurrency, len(todo))))
        interrupted = threading.Event()
        try:
            futures = {pool.submit(self._answer, client, prompts[key], key): key for key in todo}
            pending = set(futures)
            with _ctrl_c_sets(self.stop, interrupted):
                while pending and not interrupted.is_set():
                    done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                    for future in done:
                        if interrupted.is_set():  # set before `stop`, so before any worker raised _Stopped
                            break
                        answers[futures[future]] = record = future.result()  # re-raises CaptioningError
                        counts[record["run_status"]] += 1
                        bar.update()
                        bar.set_postfix(counts, refresh=False)
        finally:
            # On an error or Ctrl-C, drop what has not started and end every retry loop; requests in flight
            # finish (within the timeout) and nothing more is sent.
            self.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            client.close()
            bar.close()
        if interrupted.is_set():
            raise KeyboardInterrupt
        return answers

    def _answer(self, client: openai.OpenAI, question: _Question, key: str) -> dict[str, Any]:
        """The answer to one prompt; past the context window, once more with half the lyrics, then a permanent
        failure."""
        try:
            return self._ask(client, question.prompt, key)
        except _TooLong as exc:
            first, requests = str(exc), exc.requests
        half = len(question.lyrics) // 2
        try:
            if half:
                logger.info(
                    "caption %s: prompt too long, asking with %d characters of lyrics", key[:12], half
                )
                shorter = self.spec.render(question.lyrics[:half], question.genres, question.metadata)
                return self._ask(client, shorter, key, requests, {"lyrics_halved_to": half})
        except _TooLong as exc:
            first, requests = f"{first}; with the lyrics halved to {half} characters: {exc}", exc.requests
        error = f"context too long: {first}"
        record = {"status": "failed", "permanent": True, "sentences": None, "raw": None, "error": error}
        return self._store(key, record, requests, "failed")

    def _ask(
        self, client: openai.OpenAI, prompt: str, key: str, requests: int = 0, extra: dict | None = None
    ) -> dict[str, Any]:
        """Ask until the answer has the expected sentence count; store the outcome either way."""
        raw: str | None = None
        error = ""
        for _ in range(self.s.answer_attempts):
            try:
                raw, n = self._complete(client, prompt)
            except _TooLong as exc:
                exc.requests += requests
                raise
            except _Failed as exc:
                error, requests = str(exc), requests + exc.requests
                break
            except _Refused as exc:
                error, raw, requests = f"refused: {exc}", None, requests + 1
                break
            requests += n
            found = split_sentences(raw)
            sentences = self.spec.fit(found)
            if sentences is not None:
                record = {"status": "ok", "sentences": sentences, "raw": raw, "error": None, **(extra or {})}
                return self._store(key, record, requests, "new")
            error = f"expected {self.spec.expectation} sentences, got {len(found)}"
            logger.info("caption %s: %s, asking again", key[:12], error)
        record = {"status": "failed", "sentences": None, "raw": raw, "error": self._scrub(error)}
        return self._store(key, record, requests, "failed")

    def _store(self, key: str, record: dict[str, Any], requests: int, run_status: str) -> dict[str, Any]:
        record = {
            "version": _CACHE_VERSION,
            **record,
            "model": self.s.model,
            "temperature": self.s.temperature,
            "prompt_name": self.spec.name,
            "requests": requests,
            "written_at": time.time(),
        }
        self.cache.put(key, record)
        return {**record, "run_status": run_status}

    def _complete(self, client: openai.OpenAI, prompt: str) -> tuple[str, int]:
        """The answer text and the number of requests it took; `_Failed` when there is none."""
        extra = {} if self.s.temperature is None else {"temperature": self.s.temperature}
        last: _Transient | None = None
        for attempt in range(self.s.max_retries + 1):
            if last is not None:
                delay = self._delay(attempt - 1, last.delay_s)
                logger.info("caption request failed (%s), retry %d in %.2fs", last, attempt, delay)
                sleep_or_stop(self.stop, delay)
            self.pause.wait()
            if self.stop.is_set():
                raise _Stopped
            try:
                completion = client.chat.completions.create(
                    model=self.s.model,  # type: ignore[arg-type]
                    messages=[{"role": "user", "content": prompt}],
                    **extra,
                )
                if (refusal := _refusal(completion)) is not None:
                    raise _Refused(self._scrub(refusal)[:200])
                content = _answer_text(completion)
                if content is None:
                    raise _Transient("malformed response: no answer text")
                return content, attempt + 1
            except _Transient as exc:
                last = exc
            except openai.APIStatusError as exc:
                last = self._status_error(exc, attempt + 1)
            except openai.APITimeoutError:
                last = _Transient(f"timeout after {self.s.timeout_s}s")
            except openai.APIConnectionError as exc:
                last = _Transient(f"connection error: {self._scrub(str(exc))}")
            except (ValueError, openai.APIResponseValidationError) as exc:  # JSONDecodeError is a ValueError
                last = _Transient(f"malformed response: {type(exc).__name__}: {self._scrub(str(exc))[:200]}")
        assert last is not None
        raise _Failed(f"gave up after {self.s.max_retries + 1} requests: {last}", self.s.max_retries + 1)

    def _status_error(self, exc: openai.APIStatusError, requests: int) -> _Transient:
        status = exc.response.status_code
        message = f"HTTP {status}: {self._scrub(str(exc))[:200]}"
        if status in _FATAL_STATUS:
            raise CaptioningError(message)
        if status in _TOO_LONG_STATUS and (status == 413 or _TOO_LONG_MESSAGE.search(str(exc))):
            raise _TooLong(message, requests)
        if status not in _RETRY_STATUS and status < 500:
            # 400 / 413 / 422 (e.g. lyrics past the context window): this item only, no retry helps.
            raise _Failed(message, requests)
        retry_after = _retry_after_s(exc.response.headers)
        if status == 429 and retry_after is not None:
            self.pause.extend(retry_after)
        return _Transient(message, retry_after)

    def _delay(self, retry: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after * random.uniform(1.0, 1.1)  # never earlier than asked; spread the herd
        ceiling = min(self.s.backoff_max_s, self.s.backoff_base_s * 2**retry)
        return random.uniform(ceiling / 2, ceiling)  # "equal jitter"

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text


def _refusal(completion: Any) -> str | None:
    """Why the answer is a refusal (the model's `refusal` text, a content filter), or None for an answer."""
    try:
        choice = completion.choices[0]
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    refusal = getattr(getattr(choice, "message", None), "refusal", None)
    if isinstance(refusal, str) and refusal.strip():
        return refusal.strip()
    if getattr(choice, "finish_reason", None) == "content_filter":
        return "finish_reason content_filter"
    return None


def _answer_text(completion: Any) -> str | None:
    """The first choice's text, or None for any other shape (the client builds responses without validating)."""
    try:
        content = completion.choices[0].message.content
    except (AttributeError, IndexError, KeyError, TypeError):
        return None
    return content if isinstance(content, str) and content.strip() else None


def _retry_after_s(headers: Any) -> float | None:
    """Seconds from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date; None when absent/bad."""
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return min(max(float(ms) / 1000, 0.0), _MAX_RETRY_AFTER_S)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            seconds = float(value)
        except ValueError:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        return min(max(seconds, 0.0), _MAX_RETRY_AFTER_S)
    except (TypeError, ValueError, OverflowError):
        return None
