"""`music-clip` as a real process, with decode faults injected (tests/test_library_sturdy.py), as
tests/build_faults.py does for the builder.

- a file named *KILLME*: the worker handling it SIGKILLs itself (a native decoder crash / the OOM killer);
- a file named *HANGME*: its work never ends.

Patches run at import: the workers' fork server imports this `__main__` too, so workers carry them.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import music_clip_library.indexer as indexer
from music_clip_library.cli import main

_file_sha256 = indexer.file_sha256


def _faulty_sha256(path: Path) -> str:
    name = Path(path).name
    if "KILLME" in name:
        os.kill(os.getpid(), signal.SIGKILL)
    if "HANGME" in name:
        time.sleep(3600)
    return _file_sha256(path)


indexer.file_sha256 = _faulty_sha256

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
