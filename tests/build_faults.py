"""build_dataset.py as a real process, with faults injected at named points (tests/test_build_crash_safety.py).

Environment:
- FAULT_LOG: append the name of every file whose decode starts (in the worker that decodes it).
- a file named *KILLME*: its decode worker SIGKILLs itself (a native crash / the OOM killer);
  a file named *HANGME*: its decode never ends.
- FAULT_TIME_LIMIT: the decode time limit, set through the option's default so the same harness also runs a
  builder that has no such option (there the build hangs: the defect).
- FAULT_AFTER_SHARD=kill|pause with FAULT_MARK: after the first Parquet shard is written, write FAULT_MARK, then
  SIGKILL this process (kill) or sleep holding everything (pause, until the test kills it).

Patches run at import: the decode workers' fork server imports this `__main__` too, so workers carry them.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import datasets

import build_dataset
import music_clip_data.decode as decode

_file_sha256 = decode.file_sha256
_to_parquet = datasets.Dataset.to_parquet


def _faulty_sha256(path: Path) -> str:
    name = Path(path).name
    if os.environ.get("FAULT_LOG"):
        with open(os.environ["FAULT_LOG"], "a", encoding="utf-8") as log:
            log.write(name + "\n")
    if "KILLME" in name:
        os.kill(os.getpid(), signal.SIGKILL)
    if "HANGME" in name:
        time.sleep(3600)
    return _file_sha256(path)


def _to_parquet_then_fault(self: datasets.Dataset, *args, **kwargs):  # noqa: ANN002, ANN003
    written = _to_parquet(self, *args, **kwargs)
    mode = os.environ.get("FAULT_AFTER_SHARD")
    if mode:
        Path(os.environ["FAULT_MARK"]).write_text(str(os.getpid()))
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(3600)
    return written


decode.file_sha256 = _faulty_sha256
datasets.Dataset.to_parquet = _to_parquet_then_fault
if os.environ.get("FAULT_TIME_LIMIT"):
    build_dataset.DECODE_TIME_LIMIT_S = float(os.environ["FAULT_TIME_LIMIT"])

if __name__ == "__main__":
    sys.exit(build_dataset.main(sys.argv[1:]))
