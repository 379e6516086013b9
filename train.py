"""MusicCLIP training CLI: pretrain / finetune / sweep / evaluate (thesis ch. 4).

python train.py pretrain --dataset my_ds --objective supcon --output runs/supcon
accelerate launch train.py pretrain ...          # same command on GPUs / several processes
music-clip-train sweep --dataset my_ds --output runs/sweep --profile quick
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from music_clip_train.collate import OBJECTIVE_LABELS, OBJECTIVES
from music_clip_train.errors import InputError


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", required=True, help="dataset folder or Hub id (captions + genres configs)"
    )
    parser.add_argument(
        "--window-samples",
        type=int,
        default=None,
        help="audio window in samples at 16 kHz (default: the dataset's recorded window, else "
        "the thesis' 4,320,000 = 4.5 min; 240000 = 15 s suits the bundled corpus)",
    )
    parser.add_argument("--batch-size", type=int, default=32)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="music-clip-train", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice; 1 is faster on a busy 2-core machine)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="pretrain one objective on the captions config")
    _common(p)
    p.add_argument("--objective", required=True, help=f"one of: {', '.join(OBJECTIVES)}")
    p.add_argument("--output", required=True)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument(
        "--text-learning-rate", type=float, default=2e-5, help="text tower (only with --no-freeze-text)"
    )
    p.add_argument(
        "--freeze-text",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="encode the text tower once and cache it; only its v/z projections train (default)",
    )
    p.add_argument("--holdout", type=float, default=0.1, help="fraction of caption groups held out for eval")
    p.add_argument("--text-tower", default=None, help="text model path or id (default: packaged MiniLM)")
    p.add_argument("--checkpoint-every", type=int, default=50, help="steps between accelerate checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --output")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--push-to-hub", default=None, metavar="REPO_ID")
    p.add_argument("--debug-kill-after-step", type=int, default=None, help=argparse.SUPPRESS)

    f = sub.add_parser("finetune", help="finetune the genre classifier on N training examples")
    _common(f)
    f.add_argument(
        "--init", required=True, help="pretrained model folder, or 'none' for the from-scratch baseline"
    )
    f.add_argument("--output", required=True)
    f.add_argument(
        "--n", type=int, default=None, help="training-subset size (default: the whole train split)"
    )
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--epochs", type=int, default=30)
    f.add_argument(
        "--unfreeze-epoch", type=int, default=10, help="epoch at which the audio tower is unfrozen"
    )
    f.add_argument("--learning-rate", type=float, default=1e-3)
    f.add_argument("--tower-learning-rate", type=float, default=1e-4)
    f.add_argument("--val-fraction", type=float, default=0.2)
    f.add_argument(
        "--patience",
        type=int,
        default=None,
        help="early stopping: stop after this many epochs without a better validation macro-F1",
    )
    f.add_argument(
        "--max-examples",
        type=int,
        default=None,
        help="budget of training examples seen (fewer epochs for large N)",
    )
    f.add_argument("--checkpoint-every", type=int, default=5, help="epochs between checkpoints (0: none)")
    f.add_argument("--resume", action="store_true")
    f.add_argument("--push-to-hub", default=None, metavar="REPO_ID")
    f.add_argument("--debug-kill-after-epoch", type=int, default=None, help=argparse.SUPPRESS)

    s = sub.add_parser("sweep", help="objectives x sizes x seeds: Table 6, plots, JSON")
    _common(s)
    s.add_argument("--output", required=True)
    s.add_argument(
        "--objectives",
        nargs="+",
        default=list(OBJECTIVE_LABELS),
        help=f"any of: {', '.join(OBJECTIVE_LABELS)} ('none' = the un-pretrained baseline)",
    )
    s.add_argument("--sizes", nargs="+", type=int, default=[48, 160, 400, 800, 1600, 3200])
    s.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    s.add_argument(
        "--pretrained-dir", default=None, help="folder with one pretrained checkpoint per objective"
    )
    s.add_argument(
        "--profile",
        default="full",
        choices=["full", "cpu", "quick"],
        help="epoch budget: thesis-like 'full'; 'cpu' = the thesis schedule capped at 4,000 training examples "
        "per run (the README's table on 2 cores); 'quick' for the 30-minute CPU demo",
    )
    s.add_argument("--pretrain-epochs", type=int, default=None)
    s.add_argument("--finetune-epochs", type=int, default=None)
    s.add_argument("--unfreeze-epoch", type=int, default=None)
    s.add_argument("--max-examples", type=int, default=None, help="training examples per finetuning run")
    s.add_argument("--freeze-text", action=argparse.BooleanOptionalAction, default=True)

    e = sub.add_parser(
        "evaluate", help="retrieval + zero-shot genres (pretrained folder) or test scores + ECE (classifier)"
    )
    e.add_argument("--model", required=True)
    e.add_argument("--dataset", required=True)
    e.add_argument("--output", default=None, help="JSON path (default: <model>/evaluation.json)")
    e.add_argument("--holdout", type=float, default=None)
    e.add_argument("--seed", type=int, default=None)
    e.add_argument(
        "--ood-audio-dir",
        default=None,
        help="audio unlike the training corpus: OOD flag rate there and on the test split, AUROC, near-OOD",
    )
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
        if args.command == "pretrain":
            from music_clip_train import pretrain

            result = pretrain.run(pretrain.PretrainArgs(**_fields(args, pretrain.PretrainArgs)))
        elif args.command == "finetune":
            from music_clip_train import finetune

            result = finetune.run(finetune.FinetuneArgs(**_fields(args, finetune.FinetuneArgs)))
        elif args.command == "sweep":
            from music_clip_train import sweep

            result = sweep.run(sweep.SweepArgs(**_fields(args, sweep.SweepArgs)))
        else:
            from music_clip_train import evaluate_model

            result = evaluate_model.run(
                evaluate_model.EvaluateArgs(**_fields(args, evaluate_model.EvaluateArgs))
            )
    except InputError as err:
        print(f"music-clip-train {args.command}: error: {err}", file=sys.stderr)
        return 2
    print(_summary(args.command, result, time.time() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
