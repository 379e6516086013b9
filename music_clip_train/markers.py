"""Files whose presence means "done": written last and atomically (`music_clip_common.files.atomic_write_text`),
and read back as "not done" when a kill cut them."""

from __future__ import annotations

import json
from pathlib import Path

from music_clip_common.files import atomic_write_text


def write_json_atomic(path: Path, data: dict) -> None:
    atomic_write_text(Path(path), json.dumps(data, indent=2))


def read_json_marker(path: Path, required: tuple[str, ...] = ()) -> dict | None:
    """A marker's content when it is whole (a JSON object holding `required` keys), else None: a 0-byte or cut
    file left by a kill means "not done", never a crash of the next run."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or any(key not in data for key in required):
        return None
    return data


def weights_loadable(folder: Path) -> bool:
    """config.json parses and model.safetensors opens with every tensor its header names inside the file."""
    from safetensors import safe_open

    folder = Path(folder)
    if read_json_marker(folder / "config.json", ("model_type",)) is None:
        return False
    try:
        with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
            return bool(list(weights.keys()))
    except Exception:  # noqa: BLE001 (missing, truncated or garbled: all mean "not saved")
        return False


PRETRAINED_RESULT_KEYS = ("objective", "history", "args")


def pretrained_complete(folder: Path) -> dict | None:
    """The results of a finished `train.py pretrain` folder, or None while any part of it is missing or cut."""
    result = read_json_marker(Path(folder) / "train_results.json", PRETRAINED_RESULT_KEYS)
    return result if result is not None and weights_loadable(folder) else None
