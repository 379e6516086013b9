"""Which model, classifier and library the Space serves: flags, then env vars, then the main job's outputs."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from music_clip_library.refs import HUB_PREFIX, locate, looks_like_hub_id  # noqa: F401 (the Space's names)

# What the project's main job (`python main_job.py`, quick profile) writes, relative to the repository.
DEFAULT_MODEL = "runs/quick/sweep/pretrained/independent"
DEFAULT_CLASSIFIER = "runs/quick/classifier"
DEFAULT_LIBRARY = "data/music21-quick"
# MUSICCLIP_LIBRARY holds several libraries separated by this (a Hub ref has a ":"; paths rarely a ",").
LIBRARY_SEPARATOR = ","
REPO_ROOT = Path(__file__).resolve().parent.parent

# The commands that make each default, shown in the UI when one is missing (`./run.sh` makes all three).
MAKE_LIBRARY = "python build_dataset.py --source music21 --size quick --output data/music21-quick"
MAKE_MODEL = (
    "python train.py pretrain --dataset data/music21-quick --objective independent --window-samples 240000 "
    "--max-examples 6000 --output runs/quick/sweep/pretrained/independent"
)
MAKE_CLASSIFIER = (
    "python train.py finetune --dataset data/music21-quick --init runs/quick/sweep/pretrained/independent "
    "--output runs/quick/classifier"
)

# Limits a visitor is told about: uploads above MAX_UPLOAD_MB are refused by the server; longer clips are
# analysed over their first MAX_ANALYSED_SECONDS, the dataset builder's limit (audio_music_clip.MAX_SECONDS: the
# Space folder cannot import the repository; tests/test_audio_path.py asserts the two agree).
MAX_UPLOAD_MB = 50
MAX_ANALYSED_SECONDS = 600.0
# Serving limits (README "Limits"). Each upload is decoded and turned into a log-mel in a worker process, so a
# file can neither hang nor kill the server: a read past the time limit, or a worker that dies, is answered
# with a message and the worker is replaced. Anonymous memory a worker may add after its imports is capped.
# One worker by default: the server (~1.3 GB) and a worker (~1 GB after importing torch) fit in 3 GB.
REQUEST_SECONDS = 60.0
READ_WORKERS = 1
WORKER_MEMORY_MB = 512
WORKER_START_SECONDS = 180.0  # importing torch on a busy 2-vCPU Space can take a minute
QUEUE_SIZE = 16  # waiting events beyond this are refused with gradio's "queue is full" message
CONCURRENCY = 2  # events of one kind served at once (gradio's default_concurrency_limit)
# Clips shorter than this get the out-of-distribution warning whatever their score: measured on real recordings
# (docs/short-clips.md), the score of a 1-3 s clip crosses the threshold for 19-69 % of clips (neither reliably
# on nor off), and from 5 s it behaves as on whole clips (0-5 % flagged).
SHORT_CLIP_SECONDS = 5.0
MAX_LABELS = 500
MAX_LABEL_CHARS = 200
MAX_QUERY_CHARS = 1000


@dataclass(frozen=True)
class SpaceConfig:
    model: str
    classifier: str
    library: tuple[str, ...]  # dataset folders / Hub ids searched as one library
    port: int
    host: str = "127.0.0.1"
    request_seconds: float = REQUEST_SECONDS
    read_workers: int = READ_WORKERS
    device: str = "cpu"  # where the models run (and the library is embedded, in batches)
    warm_library: bool = False


def missing(ref: str, what: str, command: str, remote_code: bool = True) -> str | None:
    """A visitor-readable message when an artifact is absent or asked for badly, else None."""
    try:
        locate(ref, remote_code)
    except FileNotFoundError:
        return (
            f"No {what} at `{ref}`. Make it with `{command}`, or point the Space elsewhere (see the README)."
        )
    except ValueError as err:
        return f"Cannot load the {what}: {err}"
    return None


def resolve(ref: str, default: str) -> str:
    """The default paths are relative to the repository, so `python space/app.py` works from any folder."""
    if ref == default and not Path(ref).exists() and (REPO_ROOT / ref).exists():
        return str(REPO_ROOT / ref)
    return ref


def parse_args(argv: list[str] | None = None) -> SpaceConfig:
    parser = argparse.ArgumentParser(description="MusicCLIP Gradio Space")
    parser.add_argument("--model", default=os.environ.get("MUSICCLIP_MODEL", DEFAULT_MODEL))
    parser.add_argument("--classifier", default=os.environ.get("MUSICCLIP_CLASSIFIER", DEFAULT_CLASSIFIER))
    parser.add_argument(
        "--library",
        action="append",
        help="a dataset folder or Hub id; repeat it to search several as one library (default: "
        f"MUSICCLIP_LIBRARY, several separated by '{LIBRARY_SEPARATOR}', else {DEFAULT_LIBRARY})",
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="bind address (a Space sets GRADIO_SERVER_NAME=0.0.0.0)",
    )
    parser.add_argument(
        "--request-seconds",
        type=float,
        default=float(os.environ.get("MUSICCLIP_REQUEST_SECONDS", REQUEST_SECONDS)),
        help="time limit for reading one upload; a read past it is stopped and its worker replaced",
    )
    parser.add_argument(
        "--read-workers",
        type=int,
        default=int(os.environ.get("MUSICCLIP_READ_WORKERS", READ_WORKERS)),
        help="worker processes that decode uploads (each holds ~1 GB)",
    )
    parser.add_argument(
        "--device",
        default=os.environ.get("MUSICCLIP_DEVICE"),
        help="torch device of the models (default: cuda when available, else cpu)",
    )
    parser.add_argument(
        "--warm-library",
        action="store_true",
        help="embed the library into the Space's cache (audio, captions, FAISS) and exit; the main job runs this",
    )
    args = parser.parse_args(argv)
    if args.request_seconds <= 0 or args.read_workers < 1:
        parser.error("--request-seconds must be > 0 and --read-workers >= 1")
    return SpaceConfig(
        resolve(args.model, DEFAULT_MODEL),
        resolve(args.classifier, DEFAULT_CLASSIFIER),
        library_refs(args.library),
        args.port,
        args.host,
        args.request_seconds,
        args.read_workers,
        args.device or default_device(),
        args.warm_library,
    )


def library_refs(flags: list[str] | None) -> tuple[str, ...]:
    """`--library` flags, else MUSICCLIP_LIBRARY, else the main job's default."""
    refs = flags or os.environ.get("MUSICCLIP_LIBRARY", DEFAULT_LIBRARY).split(LIBRARY_SEPARATOR)
    return tuple(resolve(ref.strip(), DEFAULT_LIBRARY) for ref in refs if ref.strip())


def default_device() -> str:
    import torch  # the Space imports it anyway; config's other users need no torch

    return "cuda" if torch.cuda.is_available() else "cpu"
