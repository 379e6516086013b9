"""`train.py sweep`: the thesis' few-shot protocol (ch. 4.4) over objectives × training sizes × seeds.

Every cell finetunes on the nested stratified subset of size N for one seed and scores the one fixed test split.
A cell whose `results.json` exists is skipped, so an interrupted sweep continues where it stopped; a missing
pretrained checkpoint is pretrained first (and a half-finished one resumed).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from . import finetune, pretrain
from .collate import OBJECTIVE_LABELS, OBJECTIVES
from .data import dataset_feature_config, load_genres
from .errors import InputError
from .report import box_plot, calibration_plot, calibration_table, line_plot, markdown_table, thesis_table
from .subsets import plan_sizes

# Epoch budgets: "full" follows the thesis (unfreeze at epoch 10 of 30; ~9 h for the whole grid on 2 CPU cores);
# "cpu" keeps that schedule but caps each run at 4,000 training examples seen (epochs and the head-only phase
# shrink together for large N; the whole grid in well under an hour on 2 cores); "quick" fits the 30-minute demo.
PROFILES = {
    "full": {"pretrain_epochs": 20, "finetune_epochs": 30, "unfreeze_epoch": 10, "max_examples": None},
    "cpu": {"pretrain_epochs": 10, "finetune_epochs": 30, "unfreeze_epoch": 10, "max_examples": 4000},
    "quick": {"pretrain_epochs": 3, "finetune_epochs": 8, "unfreeze_epoch": 3, "max_examples": None},
}


@dataclass
class SweepArgs:
    dataset: str
    output: str
    objectives: list[str] = field(default_factory=lambda: ["none", *OBJECTIVES])
    sizes: list[int] = field(default_factory=lambda: [48, 160, 400, 800, 1600, 3200])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    pretrained_dir: str | None = None
    profile: str = "full"
    pretrain_epochs: int | None = None
    finetune_epochs: int | None = None
    unfreeze_epoch: int | None = None
    max_examples: int | None = None
    batch_size: int = 32
    window_samples: int | None = None
    freeze_text: bool = True


def validate(args: SweepArgs) -> None:
    unknown = [o for o in args.objectives if o not in OBJECTIVE_LABELS]
    if unknown:
        raise InputError(f"unknown objective(s) {unknown}; choose from: {', '.join(OBJECTIVE_LABELS)}")
    if args.profile not in PROFILES:
        raise InputError(f"unknown profile {args.profile!r}; choose from: {', '.join(PROFILES)}")
    if not args.seeds:
        raise InputError("no seeds given")
    if args.pretrained_dir and not Path(args.pretrained_dir).is_dir():
        raise InputError(f"--pretrained-dir {args.pretrained_dir!r} does not exist")


def _budget(args: SweepArgs) -> dict:
    budget = dict(PROFILES[args.profile])
    for key in budget:
        if getattr(args, key) is not None:
            budget[key] = getattr(args, key)
    return budget


def ensure_pretrained(args: SweepArgs, objective: str, budget: dict) -> str:
    """The checkpoint a cell starts from: given, already pretrained, or pretrained (resumed) now."""
    if objective == "none":
        return "none"
    if args.pretrained_dir:
        path = Path(args.pretrained_dir) / objective
        if not (path / "config.json").is_file():
            raise InputError(f"--pretrained-dir has no {objective!r} checkpoint at {path}")
        return str(path)
    path = Path(args.output) / "pretrained" / objective
    if not (path / "config.json").is_file():
        pretrain.run(
            pretrain.PretrainArgs(
                dataset=args.dataset,
                objective=objective,
                output=str(path),
                epochs=budget["pretrain_epochs"],
                batch_size=args.batch_size,
                window_samples=args.window_samples,
                freeze_text=args.freeze_text,
                resume=(path / "checkpoints").is_dir(),
            )
        )
    return str(path)


def collect(args: SweepArgs) -> list[dict]:
    """Every finished cell of this sweep's grid (cells of earlier, wider invocations stay on disk but out)."""
    runs = []
    for path in sorted((Path(args.output) / "runs").glob("*/*/results.json")):
        result = json.loads(path.read_text())
        result.pop("history", None)
        if (
            result["objective"] in args.objectives
            and result["n_requested"] in args.sizes
            and result["seed"] in args.seeds
        ):
            runs.append(result)
    return runs


SECTION = "\n## Few-shot genre sweep (`train.py sweep`)"


def update_model_cards(args: SweepArgs, table: str, line: Path) -> list[Path]:
    """Put the table and the Fig. 17 plot into the card of every checkpoint this sweep finetuned from."""
    updated = []
    for objective in args.objectives:
        folder = Path(args.pretrained_dir or Path(args.output) / "pretrained") / objective
        card = folder / "README.md"
        if objective == "none" or not card.is_file():
            continue
        shutil.copyfile(line, folder / "sweep_macro_f1_vs_n.png")
        text = card.read_text().split(SECTION)[0].rstrip("\n")
        card.write_text(
            f"{text}\n{SECTION}\n\nTest macro-F1 of the genre classifier finetuned from this checkpoint (row "
            f"{OBJECTIVE_LABELS[objective]}) against the un-pretrained baseline and the other objectives; sweep "
            f"report: `{args.output}/README.md`.\n\n{table}\n![macro-F1 vs N](sweep_macro_f1_vs_n.png)\n"
        )
        updated.append(card)
    return updated


def write_report(args: SweepArgs, runs: list[dict], used: dict[int, int], budget: dict, wall: float) -> dict:
    output = Path(args.output)
    table = markdown_table(runs, args.objectives, sorted(used), used)
    thesis = thesis_table(args.objectives)
    line = line_plot(runs, args.objectives, output / "macro_f1_vs_n.png")
    box = box_plot(runs, args.objectives, output / "macro_f1_boxplot.png")
    reliability = calibration_plot(runs, output / "reliability.png")
    calibration = calibration_table(runs, args.objectives, sorted(used), used)
    (output / "runs.json").write_text(json.dumps(runs, indent=2))
    (output / "table.md").write_text(table)
    command = (
        f"train.py sweep --dataset {args.dataset} --objectives {' '.join(args.objectives)} --sizes "
        f"{' '.join(map(str, args.sizes))} --seeds {' '.join(map(str, args.seeds))} --profile {args.profile} "
        f"--output {args.output}"
        + (f" --window-samples {args.window_samples}" if args.window_samples else "")
        + (f" --pretrained-dir {args.pretrained_dir}" if args.pretrained_dir else "")
    )
    (output / "README.md").write_text(
        f"# Few-shot genre sweep (thesis Table 6 protocol)\n\n```bash\n{command}\n```\n\n"
        f"Budget: {json.dumps(budget)}; text tower {'frozen (cached)' if args.freeze_text else 'trained'} during "
        f"pretraining; finetuning time summed over cells {sum(r['wall_seconds'] for r in runs) / 60:.1f} min "
        f"(this invocation: {wall / 60:.1f} min wall).\n\n## This run\n\n{table}\n"
        f"![macro-F1 vs N]({line.name})\n\n![distribution]({box.name})\n\n## Calibration\n\n{calibration}\n"
        + (f"![reliability]({reliability.name})\n\n" if reliability else "")
        + f"## Thesis Table 6\n\n{thesis}"
    )
    cards = update_model_cards(args, table, line)
    return {"table": table, "runs": len(runs), "files": [str(p) for p in (line, box, *cards)]}


def _cell_dir(output: Path, objective: str, n: int, seed: int) -> Path:
    return output / "runs" / objective / f"n{n}-seed{seed}"


def _shared_window(inits) -> int | None:
    """The pretrained checkpoints' audio window, so the baseline sees the same input as the pretrained models."""
    windows = {
        json.loads((Path(i) / "config.json").read_text())["window_samples"] for i in inits if i != "none"
    }
    return windows.pop() if len(windows) == 1 else None


def run(args: SweepArgs) -> dict:
    validate(args)
    started = time.time()
    output = Path(args.output)
    dataset_fe = dataset_feature_config(args.dataset)
    genres = load_genres(args.dataset, n_mels=(dataset_fe or {}).get("feature_size"))
    plans = plan_sizes(args.sizes, len(genres.train))
    used = {p.requested: p.used for p in plans}
    for plan in plans:
        if plan.capped:
            print(
                f"sweep: N={plan.requested} is more than the {len(genres.train)} training examples; using {plan.used}"
            )
    budget = _budget(args)
    output.mkdir(parents=True, exist_ok=True)
    # Seed-major: a sweep stopped early still has the whole grid for its first seeds.
    cells = [(o, p, s) for s in args.seeds for o in args.objectives for p in plans]
    todo = [
        c for c in cells if not (_cell_dir(output, c[0], c[1].requested, c[2]) / "results.json").is_file()
    ]
    # Pretraining first (only for objectives with unfinished cells), so the baseline can use the same window.
    inits = {o: ensure_pretrained(args, o, budget) for o in dict.fromkeys(c[0] for c in todo)}
    baseline_window = args.window_samples or _shared_window(inits.values())
    done, skipped = 0, len(cells) - len(todo)
    bar = tqdm(todo, desc="sweep")
    for objective, plan, seed in bar:
        cell = _cell_dir(output, objective, plan.requested, seed)
        init = inits[objective]
        bar.set_postfix(objective=objective, n=plan.used, seed=seed)
        result = finetune.run(
            finetune.FinetuneArgs(
                dataset=args.dataset,
                init=init,
                output=str(cell),
                n=plan.requested,
                seed=seed,
                epochs=budget["finetune_epochs"],
                unfreeze_epoch=budget["unfreeze_epoch"],
                max_examples=budget["max_examples"],
                batch_size=args.batch_size,
                window_samples=baseline_window,  # used by the from-scratch baseline only
                checkpoint_every=0,
                save_model=False,
                cap_n=True,
                show_progress=False,
            ),
            genres=genres,
        )
        result["objective"] = objective
        (cell / "results.json").write_text(json.dumps(result, indent=2))
        done += 1
    wall = time.time() - started
    report = write_report(args, collect(args), used, budget, wall)
    return {**report, "ran": done, "skipped": skipped, "wall_seconds": round(wall, 1), "output": str(output)}
