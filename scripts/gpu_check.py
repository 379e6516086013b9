"""GPU check: pretrain + finetune + evaluate through the project's one training loop (`music_clip_train.loop`) on
CUDA in bf16 and fp32, then on CPU in fp32, per-epoch losses compared, throughput printed.

Made for a machine with its own Python and torch but no `datasets`, torchaudio or FFmpeg and no network: the data
are stored log-mels carried in an .npz (`--write-mels DATASET OUT.npz` makes one from a built dataset, here) or
synthetic ones; the text tower is a tiny random BERT built here (captions are token ids: the check is about the
device and precision paths, not about text). Each variant runs in its own interpreter (Accelerate's state is one
per process). Exit status 0 when every comparison is within its tolerance.

    python scripts/gpu_check.py                   # CUDA bf16, CUDA fp32, CPU fp32
    python scripts/gpu_check.py --cpu-only        # CPU bf16 and CPU fp32: the dry run
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Relative tolerance of each epoch's mean training loss against the CPU fp32 run. fp32 on CUDA differs by TF32
# convolutions and summation order; bf16 autocast keeps ~3 significant digits in matmuls and convolutions.
TOLERANCE = {"no": 0.02, "bf16": 0.05}
N_MELS = 64
TEXT_LENGTH = 12
VOCAB = 30522


def synthetic_mels(clips: int, frames: int, labels: int, seed: int = 0) -> dict:
    """Log-mel-like arrays with a label-dependent band, so both training stages have something to learn."""
    rng = np.random.default_rng(seed)
    label = np.arange(clips) % labels
    mels = rng.random((clips, frames, N_MELS), dtype=np.float32)
    for i, y in enumerate(label):
        mels[i, :, y * 8 : y * 8 + 8] += 1.0
    return {
        "mels": mels.astype(np.float16),
        "labels": label,
        "label_names": [f"label{i}" for i in range(labels)],
    }


def write_mels(dataset: str, out: Path, clips: int, frames: int) -> None:
    """A subset of a built dataset's stored genre mels (train split), cut to `frames`, as float16 in an .npz."""
    from music_clip_train.data import load_genres

    genres = load_genres(dataset)
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(genres.train))[:clips]
    mels = np.zeros((len(pick), frames, N_MELS), np.float16)
    for row, i in enumerate(pick):
        mel = genres.train.mels[i][:frames]
        mels[row, : len(mel)] = mel
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out, mels=mels, labels=genres.train.labels[pick], label_names=np.array(genres.label_names)
    )
    print(f"wrote {len(pick)} clips x {frames} frames to {out} ({out.stat().st_size / 2**20:.1f} MiB)")


def load_data(path: str | None, clips: int, frames: int) -> dict:
    if path:
        stored = np.load(path)
        data = {k: stored[k][:clips] for k in ("mels", "labels")}
        data["mels"] = data["mels"][:, :frames]
        data["label_names"] = [str(n) for n in stored["label_names"]]
        return data
    return synthetic_mels(clips, frames, labels=4)


@dataclass
class Tensors:
    """Model inputs for every clip: features (N, 1, n_mels, F), window mask, labels, one caption of token ids."""

    features: object
    mask: object
    labels: object
    input_ids: object

    def rows(self, index) -> dict:
        return {
            "input_features": self.features[index],
            "window_mask": self.mask[index],
            "labels": self.labels[index],
            "input_ids": self.input_ids[index],
        }


def tensors(data: dict, seed: int = 0):
    """Normalised windows (the feature extractor's layout) and captions whose first tokens name the label."""
    import torch

    mels = data["mels"].astype(np.float32)
    mels = (mels - mels.mean((0, 1))) / np.maximum(mels.std((0, 1)), 1e-5)
    features = torch.from_numpy(mels).transpose(1, 2).unsqueeze(1).contiguous()
    labels = torch.as_tensor(np.asarray(data["labels"]), dtype=torch.long)
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, VOCAB, (len(labels), TEXT_LENGTH))
    ids[:, 0], ids[:, 1], ids[:, -1] = 101, 2000 + labels.numpy(), 102
    return Tensors(features, torch.ones(len(labels), 1), labels, torch.as_tensor(ids))


def run_variant(variant: str, out: Path, data_path: str | None, clips: int, frames: int, epochs: int) -> None:
    """One device/precision: pretrain, finetune, evaluate; results.json of each stage under `out`."""
    import gpu_check_specs as specs
    import torch

    torch.manual_seed(0)
    data = tensors(load_data(data_path, clips, frames))
    precision = variant.split("-")[1]
    pretrained = out / "pretrain"
    specs.run_stage(specs.PretrainCheck, data, pretrained, precision, epochs, frames)
    specs.run_stage(specs.FinetuneCheck, data, out / "finetune", precision, epochs, frames, init=pretrained)


def launch(variant: str, out: Path, args: argparse.Namespace) -> dict:
    """Run one variant in a fresh interpreter; its two results files."""
    env = dict(os.environ)
    if variant.startswith("cpu"):
        env.update(ACCELERATE_USE_CPU="true", CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, __file__, "--variant", variant, "--out", str(out / variant)]
    command += ["--clips", str(args.clips), "--frames", str(args.frames), "--epochs", str(args.epochs)]
    command += ["--mels", args.mels] if args.mels else []
    started = time.time()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{variant}: failed (exit {done.returncode})\n{done.stderr[-4000:]}")
    stages = {
        s: json.loads((out / variant / s / "results.json").read_text()) for s in ("pretrain", "finetune")
    }
    return {"wall": time.time() - started, **stages}


def compare(results: dict[str, dict], reference: str) -> list[str]:
    """Every variant's per-epoch losses against the reference's; the lines that fail their tolerance."""
    failures = []
    for variant, result in results.items():
        if variant == reference:
            continue
        tolerance = TOLERANCE[variant.split("-")[1]]
        for stage in ("pretrain", "finetune"):
            for mine, ref in zip(result[stage]["history"], results[reference][stage]["history"], strict=True):
                diff = abs(mine["train_loss"] - ref["train_loss"]) / max(abs(ref["train_loss"]), 1e-6)
                line = f"{variant} {stage} epoch {mine['epoch']}: {mine['train_loss']:.5f} vs {ref['train_loss']:.5f}"
                print(f"  {line} (rel. {diff:.2e}, tolerance {tolerance})")
                if diff > tolerance:
                    failures.append(line)
    return failures


def report(results: dict[str, dict]) -> None:
    print(f"{'variant':<10} {'stage':<9} {'last loss':>10} {'train/s':>9} {'eval/s':>9} {'score':>22}")
    for variant, result in results.items():
        for stage in ("pretrain", "finetune"):
            r = result[stage]
            score = (
                f"R@1 {r['eval']['recall@1']:.3f}"
                if stage == "pretrain"
                else f"acc {r['eval']['accuracy']:.3f}"
            )
            print(
                f"{variant:<10} {stage:<9} {r['history'][-1]['train_loss']:>10.5f} "
                f"{r['train_samples_per_second']:>9.1f} {r['eval']['samples_per_second']:>9.1f} {score:>22}"
            )
        print(f"{variant:<10} wall {result['wall']:.1f} s (interpreter start and model building included)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cpu-only", action="store_true", help="dry run without a GPU: CPU bf16 against CPU fp32"
    )
    parser.add_argument("--mels", help=".npz of stored mels (default: synthetic)")
    parser.add_argument("--clips", type=int, default=160, help="clips used (a quarter held out)")
    parser.add_argument("--frames", type=int, default=235, help="window frames (235 = 15 s at hop 1024)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / ".gpu_check" / "runs"))
    parser.add_argument("--write-mels", nargs=2, metavar=("DATASET", "OUT_NPZ"))
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # one variant, in a child interpreter
    args = parser.parse_args(argv)
    if args.write_mels:
        write_mels(args.write_mels[0], Path(args.write_mels[1]), args.clips, args.frames)
        return 0
    if args.variant:
        run_variant(args.variant, Path(args.out), args.mels, args.clips, args.frames, args.epochs)
        return 0
    import torch

    if not args.cpu_only and not torch.cuda.is_available():
        sys.exit("no CUDA device here: run with --cpu-only for the dry run")
    variants = ["cpu-bf16", "cpu-no"] if args.cpu_only else ["cuda-bf16", "cuda-no", "cpu-no"]
    device = "CPU only" if args.cpu_only else torch.cuda.get_device_name(0)
    print(
        f"torch {torch.__version__}, {device}; {args.clips} clips x {args.frames} frames ({args.mels or 'synthetic'})"
    )
    results = {v: launch(v, Path(args.out), args) for v in variants}
    failures = compare(results, "cpu-no")
    report(results)
    print("GPU CHECK " + ("FAILED:\n  " + "\n  ".join(failures) if failures else "PASSED"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
