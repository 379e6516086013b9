"""MusicCLIP training CLI: pretrain / finetune / sweep / evaluate (thesis ch. 4).

python train.py pretrain --dataset my_ds --objective supcon --output runs/supcon
accelerate launch train.py pretrain ...          # GPUs: one process per GPU
ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 train.py pretrain ...   # several CPU processes
music-clip-train sweep --dataset my_ds --output runs/sweep --profile quick
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

from transformers import HfArgumentParser

from music_clip_train.errors import InputError

# One source of defaults and help: the dataclasses the commands run with (HfArgumentParser reads their fields).
COMMANDS = {
    "pretrain": (
        "music_clip_train.pretrain",
        "PretrainArgs",
        "pretrain one objective on the captions config",
    ),
    "finetune": (
        "music_clip_train.finetune",
        "FinetuneArgs",
        "finetune the genre classifier on N training examples",
    ),
    "sweep": ("music_clip_train.sweep", "SweepArgs", "objectives x sizes x seeds: Table 6, plots, JSON"),
    "evaluate": (
        "music_clip_train.evaluate_model",
        "EvaluateArgs",
        "retrieval + zero-shot genres (pretrained folder) or test scores + ECE (classifier)",
    ),
}


def _args_class(command: str) -> type:
    module, name, _ = COMMANDS[command]
    return getattr(importlib.import_module(module), name)


def build_parser() -> argparse.ArgumentParser:
    parser = HfArgumentParser(prog="music-clip-train", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice; 1 is faster on a busy 2-core machine)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command, (_, _, help_text) in COMMANDS.items():
        sub.add_parser(command, help=help_text, dataclass_types=[_args_class(command)])
    return parser


def _fields(namespace: argparse.Namespace, cls) -> dict:
    values = vars(namespace)
    return {k: values[k] for k in cls.__dataclass_fields__ if k in values}


def _summary(command: str, result: dict, seconds: float) -> str:
    lines = [f"== music-clip-train {command}: done in {seconds / 60:.1f} min =="]
    if command == "pretrain":
        last = result["history"][-1]
        lines += [
            f"objective {result['objective']}, {result['train_tracks']} tracks "
            f"({result['heldout_tracks']} held out), {result['steps']} steps, text frozen: {result['freeze_text']}",
            f"last held-out loss {last.get('heldout_loss')}; recall {json.dumps(last.get('heldout_recall'))}",
            f"saved to {result['args']['output']}",
        ]
    elif command == "finetune":
        cap = f" (asked {result['n_requested']}, capped)" if result["capped"] else ""
        lines += [
            f"init {result['init']}, N={result['n_used']}{cap}, best epoch {result['best_epoch']}",
            f"test macro-F1 {result['test']['macro_f1']:.4f}, accuracy {result['test']['accuracy']:.4f}",
        ]
    elif command == "sweep":
        lines += [
            result["table"],
            f"{result['ran']} cells run, {result['skipped']} skipped (done before); "
            f"report in {result['output']}/README.md",
        ]
    elif result.get("kind") == "classifier":
        cal = result["calibration"]
        lines.append(
            f"test macro-F1 {result['test']['macro_f1']:.4f}; ECE {cal['ece_before']:.4f} → {cal['ece_after']:.4f} "
            f"(T = {cal['temperature']:.3f})"
        )
    else:
        r, z = result["retrieval"], result["zero_shot"]
        lines += [
            f"text→music R@1/5/10 {r['text_to_music']['recall@1']:.3f}/{r['text_to_music']['recall@5']:.3f}/"
            f"{r['text_to_music']['recall@10']:.3f}, music→text R@1 {r['music_to_text']['recall@1']:.3f}",
            f"zero-shot accuracy {z['accuracy']:.4f}, macro-F1 {z['macro_f1']:.4f} (prompt {z['template']!r})",
        ]
    if command == "evaluate" and "ood" in result:
        ood = result["ood"]
        lines.append(
            f"OOD flag rate: test split {ood['in_domain_test']['flag_rate']:.1%} of "
            f"{ood['in_domain_test']['clips']}, {ood['audio_dir']['path']} {ood['audio_dir']['flag_rate']:.1%} of "
            f"{ood['audio_dir']['clips']}; AUROC {ood['auroc']:.4f}; near-OOD (one style left out of the "
            f"statistics) {ood['near_ood']['mean_left_out_flag_rate']:.1%} of its test clips flagged"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    started = time.time()
    try:
        module = importlib.import_module(COMMANDS[args.command][0])
        cls = _args_class(args.command)
        result = module.run(cls(**_fields(args, cls)))
    except InputError as err:
        print(f"music-clip-train {args.command}: error: {err}", file=sys.stderr)
        return 2
    from accelerate import PartialState

    if PartialState().is_main_process:  # under torchrun every process returns here; one summary
        print(_summary(args.command, result, time.time() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
