"""Compare the genres config of two builds: decoded audio samples, mels, labels and splits, row by row.

Usage: python scripts/compare_genres_builds.py OLD_FOLDER NEW_FOLDER
"""

import glob
import io
import sys

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf


def rows(folder: str, split: str) -> dict:
    out = {}
    for f in sorted(glob.glob(f"{folder}/genres/{split}-*.parquet")):
        t = pq.read_table(f, columns=["track_id", "audio", "mel", "genre"])
        for r in t.to_pylist():
            out[r["track_id"]] = r
    return out


def main(old: str, new: str) -> None:
    names_old = pq.read_schema(glob.glob(f"{old}/genres/train-*.parquet")[0]).field("genre").type
    names_new = pq.read_schema(glob.glob(f"{new}/genres/train-*.parquet")[0]).field("genre").type
    print("genre feature types equal:", names_old == names_new)
    for split in ("train", "test"):
        a, b = rows(old, split), rows(new, split)
        same_ids = set(a) == set(b)
        labels = sum(a[k]["genre"] == b[k]["genre"] for k in a if k in b)
        audio = sum(
            np.array_equal(
                sf.read(io.BytesIO(a[k]["audio"]["bytes"]))[0], sf.read(io.BytesIO(b[k]["audio"]["bytes"]))[0]
            )
            for k in a
            if k in b
        )
        mels = sum(np.allclose(np.array(a[k]["mel"]), np.array(b[k]["mel"]), atol=1e-5) for k in a if k in b)
        print(
            f"{split}: rows {len(a)} vs {len(b)}, same track ids {same_ids}, labels equal {labels}, "
            f"audio samples equal {audio}, mels allclose {mels}"
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
