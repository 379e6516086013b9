"""No upload can hang or kill the Space: its read workers (time limit, memory cap, replacement after `kill -9`)
and a hostile corpus sent to the running Space over gradio_client while its process tree's memory is sampled.
"""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from test_space import _multipart, client, confidences, immich_tracks, space  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "space"))
from config import MAX_UPLOAD_MB  # noqa: E402

TREE_RSS_LIMIT_MB = 3 * 1024
UNREADABLE = "could not be read|Could not read audio"
INTERNALS = re.compile(
    r"\.cpp|Traceback|/tmp/|musicclip-space-"
)  # source locations, tracebacks, server paths


# --- hostile files ---------------------------------------------------------------------------------------------


@cache
def _crc_table(poly: int, bits: int) -> tuple[int, ...]:
    top, mask = 1 << (bits - 1), (1 << bits) - 1
    table = []
    for byte in range(256):
        crc = byte << (bits - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & mask if crc & top else (crc << 1) & mask
        table.append(crc)
    return tuple(table)


def _crc(data: bytes, poly: int, bits: int) -> int:
    table, mask, crc = _crc_table(poly, bits), (1 << bits) - 1, 0
    for byte in data:
        crc = ((crc << 8) & mask) ^ table[(crc >> (bits - 8)) ^ byte]
    return crc


def constant_flac(path: Path, seconds: int, rate: int, channels: int, level: int) -> Path:
    """A FLAC whose frames are all CONSTANT subframes: ~36 bytes per 16,384 samples on disk, however many
    gigabytes it decodes to (the FLAC format's own frame layout; no encoder is fast enough for 10 minutes of
    8 channels at 384 kHz in a test)."""
    block, total = 16384, seconds * rate
    info = struct.pack(">HH", block, block) + bytes(6)  # block sizes; frame sizes unknown
    info += ((rate << 44) | ((channels - 1) << 41) | (15 << 36) | total).to_bytes(8, "big") + bytes(16)
    subframes = (b"\x00" + struct.pack(">h", level)) * channels  # type CONSTANT, then the 16-bit value
    with path.open("wb") as f:
        f.write(b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info)  # last block: STREAMINFO
        for number, start in enumerate(range(0, total, block)):
            # sync, block size at the end of the header, rate from STREAMINFO, n independent channels, 16 bit
            header = bytes([0xFF, 0xF8, 0x70, ((channels - 1) << 4) | 0x08]) + chr(number).encode()
            header += struct.pack(">H", min(block, total - start) - 1)
            frame = header + bytes([_crc(header, 0x07, 8)]) + subframes
            f.write(frame + struct.pack(">H", _crc(frame, 0x8005, 16)))
    return path


def music(seconds: float, rate: int, channels: int = 2) -> np.ndarray:
    """The start of a real immich track at `rate` Hz (soxr), as (n, channels) float32."""
    import soxr

    audio, native = sf.read(immich_tracks()[1], dtype="float32", always_2d=True)
    audio = soxr.resample(audio[: int(seconds * native) + native], native, rate)[
        : max(1, round(seconds * rate))
    ]
    return np.tile(audio, (1, -(-channels // audio.shape[1])))[:, :channels]


def hostile_corpus(folder: Path) -> dict[str, tuple[Path, str | None, bool]]:
    """name → (file, the reason its message must contain or None where the Space must answer, whether an
    answer is also right)."""
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    files: dict[str, tuple[Path, str | None, bool]] = {}

    def wav(name: str, data: np.ndarray, rate: int, expected: str | None, subtype: str = "FLOAT") -> None:
        sf.write(folder / name, data, rate, subtype=subtype)
        files[name] = (folder / name, expected, False)

    (folder / "empty.wav").write_bytes(b"")
    files["empty.wav"] = (folder / "empty.wav", "empty", False)
    wav("header_only.wav", np.zeros((0, 2), np.float32), 44100, "no audio|empty", "PCM_16")
    wav("truncated_source.wav", music(10, 44100), 44100, None, "PCM_16")
    whole = (folder / "truncated_source.wav").read_bytes()
    (folder / "truncated_source.wav").unlink()
    files.pop("truncated_source.wav")
    (folder / "truncated.wav").write_bytes(whole[: len(whole) * 4 // 10])  # header says 10 s, 4 s are there
    # FFmpeg reads the 4 s that are there, or stops at the cut: an answer, or the reason
    files["truncated.wav"] = (folder / "truncated.wav", UNREADABLE, True)
    (folder / "random.wav").write_bytes(rng.bytes(50_000))
    files["random.wav"] = (folder / "random.wav", UNREADABLE, False)
    (folder / "text.wav").write_text("This is a shopping list, not a recording.\n" * 200)
    files["text.wav"] = (folder / "text.wav", UNREADABLE, False)
    # The audio path resamples one sample to none and says "The audio is empty (0 samples)." (reported to
    # its owner; "too short" is the reason): either is accepted, an answer is not.
    wav("one_sample.wav", music(1 / 48000, 48000, 1), 48000, r"too short|empty \(0 samples\)")
    wav("tenth_second.wav", music(0.1, 48000), 48000, "too short")
    wav("silent.wav", np.zeros((3 * 48000, 2), np.float32), 48000, "silent")
    noise = rng.uniform(-1, 1, (10 * 48000, 2)).astype(np.float32) * 10 ** (-90 / 20)
    wav("noise_-90dBFS.wav", noise, 48000, "silent")
    with_nan = music(3, 48000)
    with_nan[48000:48010] = np.nan
    wav("nan.wav", with_nan, 48000, "non-finite")
    wav("six_channels.wav", music(3, 48000, 6), 48000, None)
    wav("int16.wav", music(3, 44100), 44100, None, "PCM_16")
    wav("8kHz.wav", music(3, 8000), 8000, None, "PCM_16")
    wav("44101Hz.wav", music(3, 44101), 44101, None)
    wav("96001Hz.wav", music(3, 96001), 96001, None)
    video = folder / "video.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=5:duration=3"]
        + ["-i", str(immich_tracks()[2]), "-t", "3", "-c:v", "mpeg4", "-c:a", "aac", "-shortest", str(video)],
        check=True,
    )
    files["video.mp4"] = (video, None, False)
    return files


def over_the_limit_wav(path: Path, minutes: float = 20, rate: int = 22050) -> Path:
    """A real 20-minute mono 16-bit WAV header over sparse (silent) data: over MAX_UPLOAD_MB, nothing on disk."""
    data_bytes = int(minutes * 60 * rate) * 2
    header = b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt "
    header += (
        struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + struct.pack("<I", data_bytes)
    )
    with path.open("wb") as f:
        f.write(header)
        f.truncate(len(header) + data_bytes)
    assert path.stat().st_size > MAX_UPLOAD_MB * 1024 * 1024
    return path


# --- memory of a process tree, sampled --------------------------------------------------------------------------


def tree_rss_mb(pid: int) -> float:
    """Sum of VmRSS over `pid` and all its descendants (read from /proc)."""
    total_kb, pending = 0, [pid]
    while pending:
        proc = Path(f"/proc/{pending.pop()}")
        try:
            status = (proc / "status").read_text()
            children = " ".join(c.read_text() for c in proc.glob("task/*/children"))
        except OSError:  # it ended between listing and reading
            continue
        found = re.search(r"VmRSS:\s+(\d+)", status)
        total_kb += int(found.group(1)) if found else 0
        pending += [int(child) for child in children.split()]
    return total_kb / 1024


@contextmanager
def peak_tree_rss(pid: int, every: float = 0.02) -> Iterator[list[float]]:
    """Yields a one-item list that holds the peak tree RSS (MB) seen while the block runs."""
    peak, stop = [tree_rss_mb(pid)], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss_mb(pid))
            stop.wait(every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        stop.set()
        sampler.join()


# --- the read workers on their own ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def extractor_dir(tmp_path_factory) -> str:
    from feature_extraction_music_clip import MusicClipFeatureExtractor

    folder = tmp_path_factory.mktemp("extractor")
    MusicClipFeatureExtractor().save_pretrained(folder)  # with its remote code, as a served model has it
    return str(folder)


def test_a_read_past_the_limit_a_killed_worker_and_a_memory_hog_leave_the_reader_serving(
    tmp_path, extractor_dir
):
    from clip_reader import ClipReader, Limits, ReadError
    from config import WORKER_MEMORY_MB

    sf.write(tmp_path / "clip.wav", music(3, 48000), 48000)
    clip = str(tmp_path / "clip.wav")
    huge = str(constant_flac(tmp_path / "huge.flac", 600, 384000, 8, 8192))  # 0.5 MB, 7 GB decoded
    sf.write(tmp_path / "long.wav", np.tile(music(1, 16000, 1), (600, 1)), 16000)
    limits = Limits(request_seconds=600.0, start_seconds=600.0, memory_mb=WORKER_MEMORY_MB)
    reader = ClipReader(1, limits, max_seconds=600.0)
    worker = lambda: reader.idle.queue[0].proc  # noqa: E731  (the one worker, whichever it is now)
    try:
        read, note = reader.read(clip, extractor_dir)  # the first read waits for the worker to start
        assert read.mel.shape == (3 * 16000 // 1024 + 1, 64) and note == ""
        first = worker()

        limits.memory_mb = 48  # 1. a file that needs more memory than the cap: a message, the worker lives
        with pytest.raises(ReadError) as hog:
            reader.read(str(tmp_path / "long.wav"), extractor_dir)
        # Worded by where the allocation failed: the cap's own message, or a plain one when a decoder's
        # error text does not say that it ran out of memory (never the decoder's internals).
        assert re.fullmatch(
            r"`long.wav` needs more memory.*|Could not read audio from `long.wav`.*", str(hog.value)
        )
        limits.memory_mb = WORKER_MEMORY_MB
        assert reader.read(str(tmp_path / "long.wav"), extractor_dir)[0].mel.shape == (
            600 * 16000 // 1024 + 1,
            64,
        )
        assert worker().pid == first.pid

        limits.request_seconds = 3.0  # 2. past the time limit: stopped, a message, a new worker
        started = time.monotonic()
        with pytest.raises(ReadError, match=r"`huge.flac` took longer than 3 s, so it was stopped"):
            reader.read(huge, extractor_dir)
        assert time.monotonic() - started < 3.0 + 10.0
        assert first.poll() == -signal.SIGKILL
        limits.request_seconds = 600.0
        assert reader.read(clip, extractor_dir)[0].mel.shape == read.mel.shape
        second = worker()
        assert second.pid != first.pid

        # 3. a worker killed mid-read (as the OOM killer would)
        threading.Timer(1.0, os.kill, (second.pid, signal.SIGKILL)).start()
        started = time.monotonic()
        with pytest.raises(ReadError, match=r"Reading `huge.flac` stopped the audio reader"):
            reader.read(huge, extractor_dir)
        assert time.monotonic() - started < 30.0  # noticed at once, not at the time limit
        assert worker().pid not in (first.pid, second.pid)  # already replaced
    finally:
        reader.close()


# --- the running Space ------------------------------------------------------------------------------------------


def answer_or_reason(
    client,  # noqa: F811
    name: str,
    path: Path,
    expected: str | None,
    may_answer: bool = False,
) -> tuple[str, str | None]:
    """Send one file to the genre tab. Returns what the visitor sees (the message, or the answer's note) and
    what is wrong with it: no answer where one is due, a message without the `expected` reason, internals."""
    try:
        label, _, note = client.predict(handle_file(str(path)), api_name="/genre")
    except AppError as err:
        shown = str(err)
        if expected is None or not re.search(expected, shown):
            return shown, f"{name}: {shown!r} is not an answer or lacks {expected!r}"
    else:
        shown = note
        if expected is not None and not may_answer:
            return shown, f"{name}: answered {label['label']}, not a message with {expected!r}"
        if sum(confidences(label)) != pytest.approx(1.0, abs=1e-4):
            return shown, f"{name}: probabilities {confidences(label)}"
    return shown, f"{name}: shows internals: {shown!r}" if INTERNALS.search(shown) else None


def test_hostile_uploads_get_answers_or_reasons_and_the_space_keeps_serving(client, space):  # noqa: F811
    corpus = hostile_corpus(space["root"] / "hostile")
    too_big = over_the_limit_wav(space["root"] / "hostile" / "twenty_minutes.wav")
    with peak_tree_rss(space["proc"].pid) as peak:
        with ThreadPoolExecutor(2) as pool:  # two visitors at once, as the queue serves them
            results = dict(
                zip(
                    corpus, pool.map(lambda item: answer_or_reason(client, item[0], *item[1]), corpus.items())
                )
            )
        with pytest.raises(ValueError, match="exceeds the maximum file size"):  # refused before sending...
            client.predict(handle_file(str(too_big)), api_name="/genre")
        request = urllib.request.Request(  # ...and by the server itself when a client sends it anyway
            space["url"] + "gradio_api/upload",
            data=_multipart(too_big),
            headers={"Content-Type": "multipart/form-data; boundary=musicclip"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=120)
        assert refused.value.code == 413 and "maximum allowed size" in refused.value.read().decode()
        label, _, note = client.predict(handle_file(str(immich_tracks()[0])), api_name="/genre")
    print(f"peak tree RSS {peak[0]:.0f} MB;", {name: shown for name, (shown, _) in results.items()})
    assert [problem for _, problem in results.values() if problem] == []
    assert sum(confidences(label)) == pytest.approx(1.0, abs=1e-4) and note.startswith("Answered in")
    assert space["proc"].poll() is None
    assert peak[0] < TREE_RSS_LIMIT_MB, f"peak RSS of the Space's process tree {peak[0]:.0f} MB"


@pytest.mark.slow
def test_a_ten_minute_384khz_8_channel_flac_is_answered_or_stopped_at_the_limit(client, space):  # noqa: F811
    """`pytest -m slow tests/test_space_guard.py`: 7 GB decoded from 0.5 MB; the Space must survive it."""
    huge = constant_flac(space["root"] / "huge.flac", 600, 384000, 8, 8192)
    with peak_tree_rss(space["proc"].pid) as peak:
        message, problem = answer_or_reason(client, "huge.flac", huge, "took longer than|needs more", True)
        label, _, _ = client.predict(handle_file(str(immich_tracks()[0])), api_name="/genre")
    print(f"peak tree RSS {peak[0]:.0f} MB;", message)
    assert problem is None, problem
    assert sum(confidences(label)) == pytest.approx(1.0, abs=1e-4)
    assert peak[0] < TREE_RSS_LIMIT_MB, f"peak RSS {peak[0]:.0f} MB"


def test_internals_never_reach_the_visitor(capfd):
    """A handler's unexpected error, and a decoder message with a source location or a server path, become
    plain sentences; the details go to the server log."""
    import gradio as gr
    from app import for_visitors
    from clip_reader import safe_message

    @for_visitors
    def handler(path: str):
        raise RuntimeError(f"[enforce fail at alloc_cpu.cpp:127] cannot read {path}")

    with pytest.raises(gr.Error) as shown:
        handler("/tmp/gradio/0123/clip.wav")
    assert shown.value.message.startswith("Something went wrong on the server")
    assert not INTERNALS.search(shown.value.message)
    assert "alloc_cpu.cpp:127" in capfd.readouterr().err
    for leaky in (
        "Could not read (SingleStreamDecoder.cpp:41, Invalid data)",
        "Could not open input file: /tmp/musicclip-space-x/gradio/0123/clip.wav",
        "Traceback (most recent call last): ...",
    ):
        assert (
            safe_message(leaky, "clip.wav")
            == "Could not read audio from `clip.wav`: is it an audio or video file?"
        )
    fine = "0.1 s is too short: at least 1 s is needed."
    assert safe_message(fine, "clip.wav") == fine
