"""`train.py sweep`: the thesis' few-shot protocol (ch. 4.4) over objectives × training sizes × seeds.

Every cell finetunes on the nested stratified subset of size N for one seed and scores the one fixed test split.
A cell whose `results.json` is whole is skipped, so an interrupted sweep continues where it stopped; a missing
or half-saved pretrained checkpoint is pretrained first (and a half-finished one resumed).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from music_clip_common.experiment import BUDGETS

from . import finetune, launch, pretrain
from .collate import OBJECTIVE_LABELS, OBJECTIVES
from .data import dataset_feature_config, load_genres
from .errors import InputError
from .markers import pretrained_complete, read_json_marker, weights_loadable
from .probe import PROTOCOLS, ProbeCells
from .report import (
    box_plot,
    calibration_plot,
    calibration_table,
    goal_summary,
    line_plot,
    markdown_table,
    thesis_table,
)
from .subsets import N_UNIT_NOUNS, N_UNITS, plan_sizes


@dataclass
class SweepArgs(launch.LoopKnobs):
    dataset: str = field(metadata={"help": "dataset folder or Hub id (captions + genres configs)"})
    output: str = field(metadata={"help": "sweep folder: runs/, pretrained/, report"})
    objectives: list[str] = field(
        default_factory=lambda: ["none", *OBJECTIVES],
        metadata={"help": f"any of: {', '.join(OBJECTIVE_LABELS)} ('none' = the un-pretrained baseline)"},
    )
    sizes: list[int] = field(default_factory=lambda: [48, 160, 400, 800, 1600, 3200])
    n_unit: str = field(
        default="clips",
        metadata={"choices": list(N_UNITS), "help": "what --sizes count: " + "; ".join(N_UNITS.values())},
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    pretrained_dir: str | None = field(
        default=None, metadata={"help": "folder with one pretrained checkpoint per objective"}
    )
    pretrain_dataset: list[str] = field(
        default_factory=list,
        metadata={"help": "more datasets whose captions join --dataset's in pretraining (few-shot cells use "
                  "--dataset only), e.g. the real-music source's pretraining part"},
    )  # fmt: skip
    budget: str = field(
        default="full",
        metadata={
            "aliases": ["--profile"],  # the flag's first name: commands users already type keep working
            "choices": list(BUDGETS),
            "help": "epoch budget: thesis-like 'full'; 'cpu' = the thesis schedule capped at 4,000 training "
            "examples per run (the README's table on 2 cores); 'quick' for the 30-minute CPU demo",
        },
    )
    pretrain_epochs: int | None = None
    finetune_epochs: int | None = None
    unfreeze_epoch: int | None = None
    max_examples: int | None = field(default=None, metadata={"help": "training examples per finetuning run"})
    pretrain_examples: int | None = field(
        default=None, metadata={"help": "training examples per pretraining run"}
    )
    batch_size: int = 32
    window_samples: int | None = field(default=None, metadata={"help": "audio window in samples at 16 kHz"})
    freeze_text: bool = field(default=True, metadata={"help": "pretraining caches a frozen text tower"})
    protocol: str = field(
        default="finetune",
        metadata={
            "choices": list(PROTOCOLS),
            "help": "finetune: the thesis' protocol (head, then the whole tower); probe: the tower frozen, a logistic "
            "regression on its clip embeddings (the usual comparison of frozen encoders; seconds per cell)",
        },
    )
    jobs: int = field(
        default=1,
        metadata={
            "help": "finetuning cells run at a time, each a separate single-process run (CPU threads split; with "
            "several visible GPUs at least one per GPU, each cell on its own)"
        },
    )


def validate(args: SweepArgs) -> None:
    unknown = [o for o in args.objectives if o not in OBJECTIVE_LABELS]
    if unknown:
        raise InputError(f"unknown objective(s) {unknown}; choose from: {', '.join(OBJECTIVE_LABELS)}")
    if args.budget not in BUDGETS:
        raise InputError(f"unknown budget {args.budget!r}; choose from: {', '.join(BUDGETS)}")
    if not args.seeds:
        raise InputError("no seeds given")
    launch.validate_knobs(args)
    if args.jobs < 1:
        raise InputError(f"--jobs must be >= 1, got {args.jobs}")
    if args.pretrained_dir and not Path(args.pretrained_dir).is_dir():
        raise InputError(f"--pretrained-dir {args.pretrained_dir!r} does not exist")


def _budget(args: SweepArgs) -> dict:
    budget = dict(BUDGETS[args.budget])
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
        if not weights_loadable(path):
            raise InputError(f"--pretrained-dir has no complete {objective!r} checkpoint at {path}")
        return str(path)
    path = Path(args.output) / "pretrained" / objective
    # Done = train_results.json whole and the weights loadable: a kill during the final save means "pretrain again".
    if not pretrained_complete(path):
        pretrain.run(
            pretrain.PretrainArgs(
                dataset=[args.dataset, *args.pretrain_dataset],
                objective=objective,
                output=str(path),
                epochs=budget["pretrain_epochs"],
                max_examples=budget["pretrain_examples"],
                batch_size=args.batch_size,
                window_samples=args.window_samples,
                freeze_text=args.freeze_text,
                resume=True,  # continue from its checkpoints, if any; overwrite a half-saved folder
                **launch.knobs(args),
            )
        )
    return str(path)


def collect(args: SweepArgs) -> list[dict]:
    """Every finished cell of this sweep's grid (cells of earlier, wider invocations stay on disk but out)."""
    runs = []
    for path in sorted((Path(args.output) / "runs").glob("*/*/results.json")):
        result = read_json_marker(path, CELL_RESULT_KEYS)
        if result is None:  # cut by a kill: the cell is run again, not reported
            continue
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


def tracks_behind_n(runs: list[dict], n_unit: str = "clips") -> str:
    """What each N holds, over seeds and objectives: the tracks (groups) N clips come from (clips are drawn by
    whole tracks, so N clips of a clip-level dataset come from far fewer tracks), or the clips of N tracks."""
    other = "n_clips" if n_unit == "tracks" else "n_tracks"
    by_n: dict[int, set[int]] = {}
    for run in runs:
        if other in run:
            by_n.setdefault(run["n_used"], set()).add(run[other])
    parts = [
        f"N={n}: {min(t)}" + (f"-{max(t)}" if max(t) != min(t) else "") + f" {other.removeprefix('n_')}"
        for n, t in sorted(by_n.items())
    ]
    return f"{N_UNITS[n_unit]}; " + ", ".join(parts) + "." if parts else ""


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
        f"{' '.join(map(str, args.sizes))} --seeds {' '.join(map(str, args.seeds))} --budget {args.budget} "
        f"--output {args.output}"
        + (f" --window-samples {args.window_samples}" if args.window_samples else "")
        + (f" --pretrained-dir {args.pretrained_dir}" if args.pretrained_dir else "")
        + (f" --protocol {args.protocol}" if args.protocol != "finetune" else "")
        + (f" --n-unit {args.n_unit}" if args.n_unit != "clips" else "")
    )
    (output / "README.md").write_text(
        f"# Few-shot genre sweep ({PROTOCOLS[args.protocol]})\n\n```bash\n{command}\n```\n\n"
        f"Budget: {json.dumps(budget)}; text tower {'frozen (cached)' if args.freeze_text else 'trained'} during "
        f"pretraining; finetuning time summed over cells {sum(r['wall_seconds'] for r in runs) / 60:.1f} min "
        f"(this invocation: {wall / 60:.1f} min wall).\n\n## This run\n\n{tracks_behind_n(runs, args.n_unit)}\n\n{table}\n"
        f"{goal_summary(runs, args.objectives, sorted(used))}\n"
        f"![macro-F1 vs N]({line.name})\n\n![distribution]({box.name})\n\n## Calibration\n\n{calibration}\n"
        + (f"![reliability]({reliability.name})\n\n" if reliability else "")
        + f"## Thesis Table 6\n\n{thesis}"
    )
    cards = update_model_cards(args, table, line)
    return {"table": table, "runs": len(runs), "files": [str(p) for p in (line, box, *cards)]}


def _cell_dir(output: Path, objective: str, n: int, seed: int) -> Path:
    return output / "runs" / objective / f"n{n}-seed{seed}"


CELL_RESULT_KEYS = ("objective", "n_requested", "n_used", "seed", "test", "wall_seconds")


def cell_done(cell: Path, protocol: str = "finetune", n_unit: str = "clips") -> bool:
    """A cell is done when its results.json (written last, atomically) is whole; one made under another
    protocol or N unit is refused (a sweep folder holds one of each, so its table never mixes them)."""
    result = read_json_marker(cell / "results.json", CELL_RESULT_KEYS)
    if result is None:
        return False
    for flag, wanted, default in (("protocol", protocol, "finetune"), ("n_unit", n_unit, "clips")):
        if result.get(flag, default) != wanted:
            raise InputError(
                f"{cell} holds a --{flag.replace('_', '-')} {result.get(flag, default)} cell; a "
                f"--{flag.replace('_', '-')} {wanted} sweep needs its own --output folder"
            )
    return True


def _shared_window(inits) -> int | None:
    """The pretrained checkpoints' audio window, so the baseline sees the same input as the pretrained models."""
    windows = {
        json.loads((Path(i) / "config.json").read_text())["window_samples"] for i in inits if i != "none"
    }
    return windows.pop() if len(windows) == 1 else None


_WORKER_GENRES: dict = {}


def cell_workers(jobs: int, gpus: list[str]) -> int:
    """Cells at a time: `--jobs`, and with several visible GPUs at least one cell per GPU."""
    return max(jobs, len(gpus)) if len(gpus) > 1 else jobs


def worker_gpu(slot: int, gpus: list[str]) -> str | None:
    """The GPU worker `slot` runs its cells on (round robin), or None to leave CUDA_VISIBLE_DEVICES alone."""
    return gpus[slot % len(gpus)] if len(gpus) > 1 else None


def _start_worker(dataset: str, n_mels: int | None, threads: int, slots, gpus: list[str]) -> None:
    gpu = worker_gpu(slots.get(), gpus)
    if gpu is not None:  # before this fresh interpreter touches CUDA: the cell sees one GPU, as cuda:0
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    torch.set_num_threads(threads)
    _WORKER_GENRES["data"] = load_genres(dataset, n_mels=n_mels)  # once per worker, not per cell


def _run_cell(cell: finetune.FinetuneArgs) -> str:
    finetune.run(cell, genres=_WORKER_GENRES["data"])
    return cell.output


def run_parallel(
    cells: list[finetune.FinetuneArgs], jobs: int, n_mels: int | None, gpus: list[str] | None = None
) -> None:
    """`jobs` cells at a time, each a separate single-process run (fresh interpreters, the cores split evenly,
    each worker on its own GPU when several are visible).

    Each cell writes its own results.json last, so a sweep stopped here resumes exactly like a sequential one."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")  # no fork of a process that already runs torch threads
    slots = context.Queue()
    for slot in range(jobs):
        slots.put(slot)
    initargs = (cells[0].dataset, n_mels, threads, slots, gpus or [])
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker, initargs=initargs) as pool:
        futures = [pool.submit(_run_cell, cell) for cell in cells]  # submitted seed-major
        for future in tqdm(as_completed(futures), total=len(futures), desc=f"sweep ({jobs} jobs)"):
            future.result()  # a failed cell stops the sweep, as it does sequentially


def size_plans(args: SweepArgs, genres) -> list:
    """Each N of `--sizes`, capped at the clips or tracks the training split has (a cap is said, never hidden)."""
    available = finetune.available_units(genres.train, args.n_unit)
    plans = plan_sizes(args.sizes, available)
    for plan in plans:
        if plan.capped:
            print(
                f"sweep: N={plan.requested} is more than the {available} training {N_UNIT_NOUNS[args.n_unit]}; "
                f"using {plan.used}"
            )
    return plans


def run(args: SweepArgs) -> dict:
    validate(args)
    started = time.time()
    output = Path(args.output)
    dataset_fe = dataset_feature_config(args.dataset)
    genres = load_genres(args.dataset, n_mels=(dataset_fe or {}).get("feature_size"))
    plans = size_plans(args, genres)
    used = {p.requested: p.used for p in plans}
    budget = _budget(args)
    output.mkdir(parents=True, exist_ok=True)
    # Seed-major: a sweep stopped early still has the whole grid for its first seeds.
    cells = [(o, p, s) for s in args.seeds for o in args.objectives for p in plans]
    todo = [
        c
        for c in cells
        if not cell_done(_cell_dir(output, c[0], c[1].requested, c[2]), args.protocol, args.n_unit)
    ]
    # Pretraining first (only for objectives with unfinished cells), so the baseline can use the same window.
    inits = {o: ensure_pretrained(args, o, budget) for o in dict.fromkeys(c[0] for c in todo)}
    baseline_window = args.window_samples or _shared_window(inits.values())
    skipped = len(cells) - len(todo)
    cell_args = [
        finetune.FinetuneArgs(
            dataset=args.dataset,
            init=inits[objective],
            output=str(_cell_dir(output, objective, plan.requested, seed)),
            n=plan.requested,
            n_unit=args.n_unit,
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
            objective=objective,  # recorded in the cell's results.json, written last by the loop
            **launch.knobs(args),
        )
        for objective, plan, seed in todo
    ]
    gpus = launch.visible_gpus()
    workers = cell_workers(args.jobs, gpus)
    if args.protocol == "probe":  # seconds per cell: in this process, each pretrained tower embedded once
        cells_here = ProbeCells(genres)
        for cell in tqdm(cell_args, desc="sweep (probe)"):
            cells_here.run(cell)
    elif workers > 1 and len(cell_args) > 1:
        run_parallel(cell_args, workers, (dataset_fe or {}).get("feature_size"), gpus)
    else:
        for cell in tqdm(cell_args, desc="sweep"):
            finetune.run(cell, genres=genres)
    done = len(cell_args)
    wall = time.time() - started
    report = write_report(args, collect(args), used, budget, wall)
    return {**report, "ran": done, "skipped": skipped, "wall_seconds": round(wall, 1), "output": str(output)}
