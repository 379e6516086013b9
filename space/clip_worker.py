"""A worker process that reads uploads for the Space: file → waveform and log-mel, one request at a time.

Started and, when it runs past its time limit or dies, killed and replaced by `clip_reader.ClipReader`.
Protocol: one JSON line per request on stdin; per reply one JSON header line on the original stdout, followed by
the raw bytes of the arrays it lists (no pickle). Everything else the libraries print goes to stderr.
"""

from __future__ import annotations

import json
import os
import re
import resource
import sys
import traceback
from pathlib import Path
from typing import BinaryIO

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

MEMORY_ERROR = re.compile(r"can't allocate memory|out of memory|cannot allocate memory", re.IGNORECASE)


def reply_channel() -> BinaryIO:
    """The original stdout for replies; fd 1 becomes stderr so stray prints cannot corrupt the protocol."""
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    return channel


def cap_memory(extra_mb: int) -> None:
    """Let the process add at most `extra_mb` of data memory from now on: a bigger allocation fails (a
    MemoryError or a decoder error), the process lives. Set per request, so caches kept between requests
    do not eat into the next one's share."""
    status = Path("/proc/self/status").read_text()
    data_kb = int(re.search(r"VmData:\s+(\d+)", status).group(1))
    limit = (data_kb << 10) + (extra_mb << 20)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))


def send(channel: BinaryIO, header: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
    arrays = arrays or {}
    header = {
        **header,
        "arrays": [{"name": k, "dtype": str(v.dtype), "shape": list(v.shape)} for k, v in arrays.items()],
    }
    channel.write(json.dumps(header).encode() + b"\n")
    for array in arrays.values():
        channel.write(np.ascontiguousarray(array).tobytes())
    channel.flush()


def out_of_memory(err: BaseException | None) -> bool:
    """Whether the failure, or one it was raised while handling, was the memory cap."""
    while err is not None:
        if isinstance(err, MemoryError) or MEMORY_ERROR.search(str(err)):
            return True
        err = err.__cause__ or err.__context__
    return False


def visitor_message(err: BaseException, name: str) -> str:
    """The visitor's reason for a failed read; unexpected errors are logged here and answered generically."""
    from audio_input import UploadError
    from clip_reader import unreadable

    if out_of_memory(err):
        return f"`{name}` needs more memory to decode than the Space allows for one file."
    if isinstance(err, UploadError) or getattr(err, "reason", None):  # worded for visitors where raised
        return str(err)
    traceback.print_exception(err, file=sys.stderr)
    return unreadable(name)


class Reader:
    """Feature extractors by model reference, loaded on first use (remote code, like the server's)."""

    def __init__(self) -> None:
        self.extractors: dict[str, object] = {}

    def extractor(self, ref: str):
        if ref not in self.extractors:
            from inference import load_feature_extractor

            self.extractors[ref] = load_feature_extractor(ref)
        return self.extractors[ref]

    def handle(self, request: dict) -> tuple[dict, dict[str, np.ndarray]]:
        from inference import read_clip

        path = request["path"]
        try:
            clip, note = read_clip(path, self.extractor(request["extractor"]), request["max_seconds"])
        except Exception as err:  # the file is the visitor's: every failure becomes their message
            return {"ok": False, "message": visitor_message(err, Path(path).name)}, {}
        header = {"ok": True, "note": note, "sampling_rate": clip.sampling_rate}
        return header, {"waveform": clip.waveform, "mel": clip.mel}


def main() -> None:
    channel = reply_channel()
    # torch, transformers and FFmpeg's libraries load before the worker says it is ready
    import inference  # noqa: F401
    import torchcodec.decoders  # noqa: F401

    reader = Reader()
    send(channel, {"ready": True, "pid": os.getpid()})
    for line in sys.stdin:
        request = json.loads(line)
        cap_memory(request["memory_mb"])
        send(channel, *reader.handle(request))


if __name__ == "__main__":
    main()
