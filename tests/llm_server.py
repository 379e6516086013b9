"""A real, scriptable OpenAI-compatible chat-completions server on 127.0.0.1 for tests and benchmarks.

Each request gets the next scripted `Reply` for its prompt (`script_for`), else the next one of the shared
queue (`script`), else `default`. Every request is counted per prompt, so a test can assert nothing was asked
twice. Use the `llm_server` fixture, or `with FakeLLMServer(...) as server:` outside pytest.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class Reply:
    """One scripted behaviour. Build them with the constants and helpers below."""

    kind: (
        str  # good | two | four | text | body | malformed | empty | status | hang | refusal[_only] | filtered
    )
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0  # hang: how long; status: a delay before the error is sent
    content: str = ""  # text / body: the answer; status: the error message; refusal: the refusal text


GOOD = Reply("good")  # three sentences (with an abbreviation, a decimal and a quote)
TWO_SENTENCES = Reply("two")
FOUR_SENTENCES = Reply("four")
MALFORMED_JSON = Reply("malformed")  # 200 with a truncated JSON body
EMPTY_CHOICES = Reply("empty")  # 200, valid JSON, `choices: []`


def rate_limited(retry_after: str = "1") -> Reply:
    return Reply("status", status=429, headers=(("Retry-After", retry_after),))


def server_error(status: int = 500, message: str = "", after_s: float = 0.0) -> Reply:
    """An HTTP error (`message` in the OpenAI error body), sent `after_s` seconds after the request came."""
    return Reply("status", status=status, content=message, seconds=after_s)


CONTEXT_MESSAGE = (
    "This model's maximum context length is 4097 tokens. However, your messages resulted in 9000 tokens. "
    "Please reduce the length of the messages."
)  # OpenAI's wording; vLLM and llama.cpp servers say much the same


def context_too_long(status: int = 400) -> Reply:
    return server_error(status, CONTEXT_MESSAGE)


REFUSAL_TEXT = "I'm sorry. I cannot comment on these lyrics. They are against the usage policy."


def refusal(text: str = REFUSAL_TEXT, with_content: bool = True) -> Reply:
    """A refusal in `message.refusal`; `content` carries the same text (as some compatible servers send it) or
    is null (OpenAI's structured refusals)."""
    return Reply("refusal" if with_content else "refusal_only", content=text)


CONTENT_FILTERED = Reply("filtered")  # three tidy sentences, but `finish_reason: content_filter`


def hang(seconds: float) -> Reply:
    """Answer nothing for `seconds` (longer than the client's timeout), then a good answer nobody reads."""
    return Reply("hang", seconds=seconds)


def text(content: str) -> Reply:
    return Reply("text", content=content)


def body(raw: str) -> Reply:
    """A 200 response with exactly this body (odd shapes of JSON)."""
    return Reply("body", content=raw)


def good_answer(prompt: str) -> str:
    tag = hashlib.sha256(prompt.encode()).hexdigest()[:8]
    return (
        f"The sentiment of song {tag} is wistful, e.g. like Mr. Jones at 3.5 a.m. on a rainy day. "
        'Its theme is "leaving home" and what stays behind. '
        "It sounds like gentle indie rock with a hopeful, bittersweet mood."
    )


class FakeLLMServer:
    def __init__(self, latency_s: float = 0.0, default: Reply = GOOD) -> None:
        self.latency_s = latency_s  # added to every request (benchmarks)
        self.default = default
        self.counts: Counter[str] = Counter()  # prompt text -> requests received
        self.requests: list[dict[str, Any]] = []  # prompt, model, temperature, authorization, reply kind
        self._queue: deque[Reply] = deque()
        self._per_prompt: list[tuple[str, deque[Reply]]] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting -----------------------------------------------------------------------------------------
    def script(self, *replies: Reply) -> None:
        """Replies for the next requests, whatever their prompt, in arrival order."""
        with self._lock:
            self._queue.extend(replies)

    def script_for(self, prompt_contains: str, *replies: Reply) -> None:
        """Replies for the next requests whose prompt contains `prompt_contains` (checked before `script`)."""
        with self._lock:
            self._per_prompt.append((prompt_contains, deque(replies)))

    def count(self, prompt_contains: str) -> int:
        with self._lock:
            return sum(n for prompt, n in self.counts.items() if prompt_contains in prompt)

    @property
    def total_requests(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    def _next_reply(self, prompt: str) -> Reply:
        for needle, replies in self._per_prompt:
            if needle in prompt and replies:
                return replies.popleft()
        return self._queue.popleft() if self._queue else self.default

    def _record(self, body: dict[str, Any], authorization: str) -> Reply:
        messages = body.get("messages") or [{}]
        prompt = str(messages[-1].get("content", ""))
        with self._lock:
            self.counts[prompt] += 1
            reply = self._next_reply(prompt)
            self.requests.append(
                {
                    "prompt": prompt,
                    "model": body.get("model"),
                    "temperature": body.get("temperature"),
                    "authorization": authorization,
                    "reply": reply.kind,
                }
            )
        return reply

    # -- lifecycle -----------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FakeLLMServer:
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()  # releases hanging handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 drops connections under a concurrent burst


class _Handler(BaseHTTPRequestHandler):
    owner: FakeLLMServer
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        body = json.loads(raw or b"{}")
        reply = self.owner._record(body, self.headers.get("Authorization", ""))
        if self.owner.latency_s:
            time.sleep(self.owner.latency_s)
        prompt = str((body.get("messages") or [{}])[-1].get("content", ""))
        model = str(body.get("model", ""))
        if reply.kind == "hang":
            if self.owner._closing.wait(reply.seconds):
                return
            reply = GOOD
        if reply.kind == "status":
            if reply.seconds and self.owner._closing.wait(reply.seconds):
                return
            message = reply.content or f"scripted {reply.status}"
            error = {"error": {"message": message, "type": "scripted", "code": None}}
            self._send(reply.status, error, reply.headers)
        elif reply.kind == "malformed":
            self._send_bytes(200, b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"ind')
        elif reply.kind == "body":
            self._send_bytes(200, reply.content.encode())
        elif reply.kind == "empty":
            self._send(200, _completion(model, None))
        elif reply.kind in ("refusal", "refusal_only"):
            content = reply.content if reply.kind == "refusal" else None
            self._send(200, _completion(model, "", refusal=reply.content, refusal_content=content))
        elif reply.kind == "filtered":
            self._send(200, _completion(model, good_answer(prompt), finish_reason="content_filter"))
        else:
            content = {
                "good": good_answer(prompt),
                "two": "The song is sad. It is about loss.",
                "four": "The song is sad. It is about loss. It sounds like rock. The chorus lifts it up.",
                "text": reply.content,
            }[reply.kind]
            self._send(200, _completion(model, content))

    def _send(self, status: int, payload: dict[str, Any], headers: tuple[tuple[str, str], ...] = ()) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), headers)

    def _send_bytes(self, status: int, data: bytes, headers: tuple[tuple[str, str], ...] = ()) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): what a real server sees too


def _completion(
    model: str,
    content: str | None,
    refusal: str | None = None,
    refusal_content: str | None = None,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    """`content` None: no choices; with `refusal`, the message's content is `refusal_content`."""
    message = {"role": "assistant", "content": refusal_content if refusal else content, "refusal": refusal}
    choices = [] if content is None else [{"index": 0, "message": message, "finish_reason": finish_reason}]
    return {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


@pytest.fixture
def llm_server() -> Iterator[FakeLLMServer]:
    """A started FakeLLMServer (fresh counts, no latency, good answers unless scripted)."""
    with FakeLLMServer() as server:
        yield server
