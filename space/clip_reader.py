"""Read uploads in worker processes with a time limit, so that no file can hang or kill the Space.

Each read goes to an idle worker (`clip_worker.py`). A worker that runs past the time limit is killed; one that
dies (out of memory, a crash in a decoder) is noticed by the end of its output. Either way the visitor gets a
message, the worker is replaced, and the server keeps serving.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from inference import Clip

WORKER = Path(__file__).resolve().parent / "clip_worker.py"
# What a visitor must never see: source locations, tracebacks, server paths (the upload's own name is fine).
UNSAFE = re.compile(r"Traceback|\.(?:cpp|cc|cxx|h|hpp|c|py)\b|(?:^|[\s(`'\"=:])/[^\s/]+/")


class ReadError(Exception):
    """Why an upload gave no clip, worded for the visitor."""


class WorkerLost(Exception):
    """The worker stopped answering (killed at the time limit, or died); it must be replaced."""

    def __init__(self, stage: str, timed_out: bool, detail: str):
        super().__init__(f"{stage}: {detail}")
        self.stage = stage  # "start" or "request"
        self.timed_out = timed_out


def unreadable(name: str) -> str:
    """The message for a file that failed in a way nobody wrote a message for."""
    return f"Could not read audio from `{name}`: is it an audio or video file?"


def safe_message(message: str, name: str) -> str:
    """A worker's message, or a plain one where it would show internals."""
    return unreadable(name) if UNSAFE.search(message) else message


@dataclass
class Limits:
    request_seconds: float
    start_seconds: float
    memory_mb: int


class Worker:
    """One `clip_worker.py` process and the timed exchange of one request with it."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.ready = False
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # stderr: the server's own, so a worker's log lines land in the Space's log
        )

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            pipe.close()

    def start(self) -> None:
        """Wait for the worker's "ready" line (its imports done); WorkerLost if it does not come in time."""
        if not self.ready:
            self._timed(self._read_reply, self.limits.start_seconds, "start")
            self.ready = True

    def ask(self, request: dict) -> tuple[dict, dict[str, np.ndarray]]:
        """Send one request, return the reply's header and arrays; WorkerLost past the limit or on death."""
        self.start()
        return self._timed(lambda: self._exchange(request), self.limits.request_seconds, "request")

    def _exchange(self, request: dict) -> tuple[dict, dict[str, np.ndarray]]:
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()
        return self._read_reply()

    def _read_reply(self) -> tuple[dict, dict[str, np.ndarray]]:
        line = self.proc.stdout.readline()
        if not line:
            raise EOFError
        header = json.loads(line)
        arrays = {}
        for spec in header.pop("arrays", []):
            dtype, shape = np.dtype(spec["dtype"]), tuple(spec["shape"])
            size = dtype.itemsize * int(np.prod(shape))
            data = self.proc.stdout.read(size)
            if len(data) != size:
                raise EOFError
            arrays[spec["name"]] = np.frombuffer(bytearray(data), dtype=dtype).reshape(shape)
        return header, arrays

    def _timed(self, step, seconds: float, what: str):
        """Run `step` (blocking reads of the worker's pipe); a timer kills the worker at `seconds`."""
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            self.proc.kill()

        timer = threading.Timer(seconds, expire)
        timer.start()
        try:
            return step()
        except (EOFError, OSError, ValueError) as err:  # a pipe closed or cut mid-reply
            self.kill()
            if expired.is_set():
                raise WorkerLost(what, True, f"past {seconds:g} s") from err
            raise WorkerLost(what, False, f"worker exited with {self.proc.returncode}") from err
        finally:
            timer.cancel()


class ClipReader:
    """A pool of read workers; `read` blocks until one is free (gradio's queue bounds the waiting)."""

    def __init__(self, workers: int, limits: Limits, max_seconds: float):
        self.limits = limits
        self.max_seconds = max_seconds
        self.idle: queue.Queue[Worker] = queue.Queue()
        for _ in range(workers):
            self.idle.put(Worker(limits))

    def wait_ready(self) -> None:
        """Wait until the workers have started, so that the first visitor does not wait for torch to import."""
        for worker in list(self.idle.queue):
            try:
                worker.start()
            except WorkerLost as lost:  # a dead idle worker is replaced by the next read
                print(f"clip reader: a worker did not start ({lost})", file=sys.stderr, flush=True)

    def read(self, path: str | None, extractor_ref: str) -> tuple[Clip, str]:
        """The upload's Clip and note, read by a worker; ReadError with the visitor's message otherwise."""
        if not path:
            raise ReadError("Upload or record a clip first.")
        name = Path(path).name
        request = {
            "path": path,
            "extractor": extractor_ref,
            "max_seconds": self.max_seconds,
            "memory_mb": self.limits.memory_mb,
        }
        worker = self.idle.get()
        if worker.proc.poll() is not None:  # died while idle (killed from outside): not this file's doing
            worker = Worker(self.limits)
        try:
            header, arrays = worker.ask(request)
        except WorkerLost as lost:
            print(f"clip reader: {name}: {lost}; starting a new worker", file=sys.stderr, flush=True)
            raise ReadError(self._lost_message(name, lost)) from None
        finally:
            self.idle.put(worker if worker.proc.poll() is None else Worker(self.limits))
        if not header["ok"]:
            raise ReadError(safe_message(header["message"], name))
        clip = Clip(waveform=arrays["waveform"], mel=arrays["mel"], sampling_rate=header["sampling_rate"])
        return clip, header["note"]

    def _lost_message(self, name: str, lost: WorkerLost) -> str:
        if lost.stage == "start":
            return "The Space could not start its audio reader just now. Please try again in a minute."
        if lost.timed_out:
            return (
                f"Reading `{name}` took longer than {self.limits.request_seconds:g} s, so it was stopped. "
                "Try a shorter clip or a common format (WAV, MP3, FLAC, Ogg, M4A)."
            )
        return f"Reading `{name}` stopped the audio reader (the file may be damaged). Try another file."

    def close(self) -> None:
        while not self.idle.empty():
            self.idle.get_nowait().kill()
