"""Regenerate every results table and key number of README.md and docs/*.md from the files under docs/results/.

A generated block sits between `<!-- results:NAME -->` and `<!-- /results:NAME -->` (on their own lines for a
table, inside a sentence for a number); `<!-- results:NAME source -->` adds where the numbers come from (dates and
commits: docs only, never the README). Table 6 cells are the sweep's own per-cell files
(`runs/<sweep>/runs/<objective>/n<N>-seed<S>/results.json`, copied to
`docs/results/table6/<profile>/<objective>/n<N>-seed<S>.json`) and go through the sweep report's table code;
a profile whose cell files are absent renders its transcribed table (`table6/<profile>-transcribed.json`).

    python scripts/render_results.py            # rewrite the blocks in place
    python scripts/render_results.py --check    # exit 1 with a diff when the committed text differs
"""

from __future__ import annotations

import argparse
import difflib
import functools
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout's music_clip_train, also when run as a plain script

from music_clip_train.collate import OBJECTIVE_LABELS  # noqa: E402
from music_clip_train.report import aggregate, markdown_table  # noqa: E402

BLOCK = re.compile(
    r"<!-- results:(?P<name>[\w-]+)(?P<flags>(?: [\w-]+)*) -->(?P<body>.*?)<!-- /results:(?P=name) -->", re.S
)
CELL_NAME = re.compile(r"n(?P<n>\d+)-seed(?P<seed>\d+)\.json")


class ResultsError(Exception):
    """A result file is missing, malformed or disagrees with its path; or a marker names no renderer."""


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ResultsError(f"{path}: {err}") from err


def load_cells(folder: Path) -> list[dict]:
    """Every cell file `<objective>/n<N>-seed<S>.json` under folder (none when the folder is absent); a file whose
    objective, N or seed disagrees with its path is an error, not a silently misplaced cell."""
    runs = []
    for path in sorted(folder.glob("*/n*-seed*.json")):
        match = CELL_NAME.fullmatch(path.name)
        run = read_json(path)
        expected = (path.parent.name, int(match["n"]), int(match["seed"])) if match else None
        found = (run.get("objective"), run.get("n_requested"), run.get("seed"))
        if expected != found or not isinstance(run.get("test", {}).get("macro_f1"), float):
            raise ResultsError(f"{path}: holds {found} with test {run.get('test')}, its path says {expected}")
        runs.append(run)
    return runs


def _ordered(objectives) -> list[str]:
    chosen = set(objectives)
    return [o for o in OBJECTIVE_LABELS if o in chosen]


def _signed(x: float) -> str:
    return "0" if x == 0 else f"{x:+g}".replace("-", "−")


def reading_text(mean_over_n: dict[str, float], best: str, first: int, last: int, ratio, diff) -> str:
    """The table's key numbers in one sentence: mean over N per objective, the best one against the baseline."""
    parts = []
    if mean_over_n:
        ranked = sorted(mean_over_n, key=mean_over_n.get, reverse=True)
        parts.append(
            "Mean over N: " + ", ".join(f"{OBJECTIVE_LABELS[o]} {mean_over_n[o]:.3f}" for o in ranked)
        )
    versus = [f"{ratio:g}× at N = {first}"] if ratio is not None else []
    versus += [f"{_signed(diff)} at N = {last}"] if diff is not None and last != first else []
    if versus:
        parts.append(f"{OBJECTIVE_LABELS[best]} against the un-pretrained baseline: " + ", ".join(versus))
    return ". ".join(parts) + "."


class Profile:
    """One sweep's Table 6: its cell files when present, else its transcribed table."""

    def __init__(self, results: Path, name: str):
        self.runs = load_cells(results / "table6" / name)
        transcribed = results / "table6" / f"{name}-transcribed.json"
        self.transcribed = read_json(transcribed) if not self.runs and transcribed.is_file() else None
        self.name = name

    def table(self) -> str:
        if self.runs:
            used = {run["n_requested"]: run["n_used"] for run in self.runs}
            return markdown_table(self.runs, _ordered(r["objective"] for r in self.runs), sorted(used), used)
        if self.transcribed is None:
            return f"*No result files for the {self.name} profile under docs/results/table6/.*\n"
        data = self.transcribed
        lines = [
            "| objective | " + " | ".join(map(str, data["sizes"])) + " |",
            "|---|" + "---|" * len(data["sizes"]),
        ]
        for objective in _ordered(data["mean_std"]):
            row = " | ".join(f"{mean:.2f} ± {std:.2f}" for mean, std in data["mean_std"][objective])
            lines.append(f"| {OBJECTIVE_LABELS[objective]} | {row} |")
        return (
            "\n".join(lines) + f"\n\nTest macro-F1, mean ± std over seeds {data['seeds']} (population std).\n"
        )

    def reading(self) -> str:
        if self.transcribed is not None:
            data, read = self.transcribed, self.transcribed["reading"]
            sizes = data["sizes"]
            mean_over_n, best = read.get("mean_over_n", {}), read["best"]
            return reading_text(
                mean_over_n, best, sizes[0], sizes[-1], read.get("ratio_first"), read.get("diff_last")
            )
        if not self.runs:
            return ""
        means = {key: float(np.mean(v)) for key, v in aggregate(self.runs).items()}
        sizes = sorted({n for _, n in means})
        mean_over_n = {o: round(float(np.mean([means[(o, n)] for n in sizes])), 3) for o, _ in means}
        best = max((o for o in mean_over_n if o != "none"), key=mean_over_n.get)
        if "none" not in mean_over_n:
            return reading_text(mean_over_n, best, sizes[0], sizes[-1], None, None)
        ratio = round(means[(best, sizes[0])] / max(means[("none", sizes[0])], 1e-9), 2)
        return reading_text(
            mean_over_n,
            best,
            sizes[0],
            sizes[-1],
            ratio,
            round(means[(best, sizes[-1])] - means[("none", sizes[-1])], 3),
        )

    def seeds_at_smallest_n(self) -> str:
        """Every seed's macro-F1 at the smallest N, per objective (where the spread of a mean comes from)."""
        if self.runs:
            first = min(run["n_requested"] for run in self.runs)
            by_objective: dict[str, list[float]] = {}
            for run in sorted(self.runs, key=lambda r: r["seed"]):
                if run["n_requested"] == first:
                    by_objective.setdefault(run["objective"], []).append(run["test"]["macro_f1"])
        elif self.transcribed is not None:
            first = self.transcribed["sizes"][0]
            by_objective = self.transcribed.get("per_seed", {}).get(str(first), {})
        else:
            return ""
        per_objective = [
            f"{OBJECTIVE_LABELS[o]} " + ", ".join(f"{v:.3f}" for v in by_objective[o])
            for o in _ordered(by_objective)
        ]
        return f"at N = {first}, seed by seed: " + "; ".join(per_objective)

    def source(self) -> str:
        if self.runs:
            return f"Rendered from the {len(self.runs)} cell files under `docs/results/table6/{self.name}/`."
        if self.transcribed is None:
            return ""
        return f"Source: {self.transcribed['source']}; measured {self.transcribed['measured']}."


def _cell_values(results: Path, name: str) -> dict[tuple[str, int, int], float]:
    return {
        (r["objective"], r["n_requested"], r["seed"]): r["test"]["macro_f1"]
        for r in load_cells(results / "table6" / name)
    }


def _is_by_n(results: Path, *names: str) -> dict[int, list[float]]:
    """IS test macro-F1 per N over every cell of the named folders under table6/."""
    runs = [run for name in names for run in load_cells(results / "table6" / name)]
    return {n: values for (objective, n), values in aggregate(runs).items() if objective == "independent"}


def _versus_spread(before: list[float], now: float) -> tuple[float, float, float, str]:
    """mean and std of `before`, the change of `now` against that mean, and whether it is within the std."""
    mean, std = float(np.mean(before)), float(np.std(before))
    change = round(now - mean, 3)
    return mean, std, change, "within" if abs(change) <= std else "**beyond**"


def quick_drift(results: Path) -> tuple[str, str]:
    """IS of the quick sweep at the round's start, re-run on the same machine, against today's code on the same build
    and against today's builds (renders only; renders + real), per N, beside the round-start seed spread."""
    start = _is_by_n(results, "quick-round-start")
    rows = []
    for label, name in (("today's code, round-start build", "quick-round-start-build-today"),
                        ("today's build, renders only", "quick-renders-only"), ("today's build, renders + real", "quick")):  # fmt: skip
        for n, values in sorted(_is_by_n(results, name).items()):
            mean, std, change, verdict = _versus_spread(start[n], float(np.mean(values)))
            rows.append(
                [label, str(n), f"{mean:.3f} ± {std:.3f}", f"{np.mean(values):.3f}", _signed(change), verdict]
            )
    header = [
        "IS pretrained by",
        "N",
        "round start (mean ± std)",
        "now",
        "change",
        "vs round-start seed spread",
    ]
    cells = {name: _cell_values(results, name) for name in ("quick-round-start", "quick-round-start-build-today",
                                                            "quick-renders-only")}  # fmt: skip
    first, same_build, today = cells.values()
    equal = sum(same_build[k] == first[k] for k in same_build)
    baseline = [k for k in first if k[0] == "none"]
    note = (
        f"Means over seeds. Today's code on the round-start build gives {equal} of its {len(same_build)} IS cells "
        f"equal to the last digit; the un-pretrained baseline of today's build equals the round start's in "
        f"{sum(today[k] == first[k] for k in baseline)} of {len(baseline)} cells. Files: `docs/results/table6/` "
        "(`quick-round-start/`, `quick-round-start-build-today/`, `quick-renders-only/`, `quick/`)."
    )
    return _table(header, rows), note


# The quick sweep's IS cells by build and pretraining seed (seed 0 = the cells of the drift block above).
PRETRAIN_SEED_RUNS = {
    "round-start build": ("quick-round-start", "quick-round-start-ps1", "quick-round-start-ps2"),
    "today's build": ("quick-renders-only", "quick-today-ps1", "quick-today-ps2"),
}


def quick_pretrain_seeds(results: Path) -> tuple[str, str]:
    """IS over three pretraining seeds x two finetuning seeds on each build: is today's renders-only table within
    the spread that pretraining alone gives?"""
    by_build = {build: _is_by_n(results, *names) for build, names in PRETRAIN_SEED_RUNS.items()}
    before, after = by_build.values()
    rows = []
    for n in sorted(before):
        mean, std, change, verdict = _versus_spread(before[n], float(np.mean(after[n])))
        rows.append([str(n), f"{mean:.3f} ± {std:.3f}", f"{np.mean(after[n]):.3f} ± {np.std(after[n]):.3f}",
                     _signed(change), verdict])  # fmt: skip
    header = ["N", *(f"{build} ({len(v[min(v)])} runs)" for build, v in by_build.items()), "change"]
    header.append("vs round-start spread")
    folders = ", ".join(f"`{name}/`" for names in PRETRAIN_SEED_RUNS.values() for name in names)
    note = "IS pretrained with seeds 0, 1, 2, each finetuned with seeds 0, 1 (mean ± std over the runs)."
    return _table(header, rows), f"{note} Files under `docs/results/table6/`: {folders}."


def thesis_table(results: Path) -> tuple[str, str]:
    data = read_json(results / "thesis-table6.json")
    rows = [
        f"| {OBJECTIVE_LABELS[o]} | " + " | ".join(f"{v:.2f}" for v in data["macro_f1"][o]) + " |"
        for o in _ordered(data["macro_f1"])
    ]
    header = [
        "| objective | " + " | ".join(map(str, data["sizes"])) + " |",
        "|---|" + "---|" * len(data["sizes"]),
    ]
    return "\n".join(header + rows) + "\n", f"Source: {data['source']}; {data['metric']}."


def _versus_baseline(pretrained: float | None, base: float | None, note: str) -> str:
    if pretrained is None:
        return note or "–"
    return f"{pretrained:.3f}" + (f" ({_signed(round(pretrained - base, 3))})" if base is not None else "")


def _uncapped_row(name: str, f1: dict, note: str = "") -> str:
    cells = []
    for n in ("1600", "3200"):
        base = f1["none"].get(n)
        cells += [
            "–" if base is None else f"{base:.3f}",
            _versus_baseline(f1["independent"].get(n), base, note),
        ]
    return f"| {name} | " + " | ".join(cells) + " |"


def uncapped_table(results: Path) -> tuple[str, str]:
    """Seed 0 of the uncapped schedule at N = 1600 and 3200: the transcribed earlier runs and the kept cells."""
    earlier = read_json(results / "table6" / "uncapped-earlier-runs.json")
    lines = [
        "| uncapped, seed 0 | N = 1600 baseline | N = 1600 IS | N = 3200 baseline | N = 3200 IS |",
        "|---|---|---|---|---|",
    ]
    lines += [_uncapped_row(run["name"], run["macro_f1"], run.get("note", "")) for run in earlier["runs"]]
    kept = {"none": {}, "independent": {}}
    for run in load_cells(results / "table6" / "uncapped"):
        kept.setdefault(run["objective"], {})[str(run["n_requested"])] = run["test"]["macro_f1"]
    if any(kept.values()):
        lines.append(_uncapped_row("third run (cell files in `docs/results/table6/uncapped/`)", kept))
    return "\n".join(
        lines
    ) + "\n", f"Source: {earlier['source']}; measured {earlier['measured']}. Command: `{earlier['command']}`."


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def _provenance(data: dict) -> str:
    return f"Source: {data['source']}; measured {data['measured']}."


def quick_stages(results: Path) -> tuple[str, str]:
    data = read_json(results / "quick-run.json")
    rows = [[s["stage"], s["command"], s["result"]] for s in data["stages"]]
    table = _table(["stage", "command", data.get("column", "what it gives (idle 2-core machine)")], rows)
    return table, _provenance(data) + " " + " ".join(data["notes"])


def quick_run_time(results: Path) -> tuple[str, str]:
    data = read_json(results / "quick-run.json")
    setup, report, total = data["setup_min"], data["to_report_min"], data["total_min"]
    condition = data.get("condition", "on an idle 2-core machine")
    text = f"set-up {setup:.1f} min, then {report:.1f} min up to the report: {total:.1f} min in all"
    return f"{text} {condition}", _provenance(data)


DEFAULT_TESTS_AIM_MIN = 8  # the README's default test command stays under this on 2 cores


def tests_run(results: Path) -> tuple[str, str]:
    data = read_json(results / "tests-run.json")
    minutes = data["pytest_min"]
    verdict = "within" if minutes <= DEFAULT_TESTS_AIM_MIN else "over"
    text = f"{data['tests']} tests in {minutes:.1f} min of pytest on a 2-core machine: {verdict} the"
    return f"{text} {DEFAULT_TESTS_AIM_MIN}-minute aim", _provenance(data)


def full_run(results: Path) -> tuple[str, str]:
    data = read_json(results / "full-run.json")
    rows = [[stage, f"{minutes:.1f}"] for stage, minutes in data["stages_min"].items()]
    rows.append(["**total**", f"**{data['total_min']:.1f}**"])
    note = f"The same build with a later, faster builder took {data['build_with_later_builder_min']:.1f} min."
    return _table(["stage of `./run.sh --profile full --no-serve`", "minutes"], rows), _provenance(
        data
    ) + " " + note


def full_run_time(results: Path) -> tuple[str, str]:
    data = read_json(results / "full-run.json")
    return f"{data['total_min'] / 60:.1f} hours", _provenance(data)


def full_evaluation(results: Path) -> tuple[str, str]:
    data = read_json(results / "full-run.json")
    clf, ev, r10 = data["classifier"], data["evaluate"], data["pretraining_r10"]
    rows = [
        [
            "classifier test macro-F1 / accuracy",
            f"{clf['test_macro_f1']:.3f} / {clf['test_accuracy']:.3f}",
            clf["command"],
        ],
        [
            "zero-shot genre accuracy / macro-F1 (chance)",
            f"{ev['zero_shot_accuracy']:.3f} / {ev['zero_shot_macro_f1']:.3f} ({ev['chance']:.3f})",
            ev["command"],
        ],
        [
            f"text→music R@10 over {ev['heldout_tracks']:,} held-out tracks ({ev['heldout_captions']:,} captions), "
            f"median rank",
            f"{ev['text_to_music_r10']:.3f} (chance {ev['r10_chance']:.3f}), {ev['median_rank']}",
            ev["command"],
        ],
    ]
    rows += [
        [
            f"after pretraining with {OBJECTIVE_LABELS[o]}: text→music R@10",
            f"{r10[o]:.3f}",
            f"`{r10['source']}`",
        ]
        for o in _ordered(k for k in r10 if k in OBJECTIVE_LABELS)
    ]
    return _table(["what", "value", "made by"], rows), _provenance(data)


def calibration_ood(results: Path) -> tuple[str, str]:
    data = read_json(results / "calibration-ood.json")
    ood = data["ood"]
    rows = [
        [
            f"test-split ECE ({data['ece_bins']} bins) before → after temperature scaling",
            f"{data['ece_before']:.3f} → {data['ece_after']:.3f} (T = {data['temperature']:.2f}, fitted on "
            f"{data['val_clips']} validation clips; NLL {data['nll_before']:.2f} → {data['nll_after']:.2f})",
        ],
        [
            f"genres test clips flagged out of distribution (of {ood['test_clips']})",
            f"{ood['flagged_test']:.1%}",
        ],
        [f"immich-memories-music tracks flagged (of {ood['ood_tracks']})", f"{ood['flagged_ood']:.0%}"],
        ["AUROC, test clips vs immich tracks", f"{ood['auroc']:.4f}"],
        [
            "a style left out of the statistics: its test clips flagged",
            f"{ood['leave_one_style_out_flagged']:.1%}",
        ],
    ]
    return _table(["the quick profile's classifier", "value"], rows), _provenance(data) + " " + data[
        "earlier"
    ]


def ood_summary(results: Path) -> tuple[str, str]:
    data = read_json(results / "calibration-ood.json")
    ood = data["ood"]
    text = (
        f"it flags {ood['flagged_ood']:.0%} of the {ood['ood_tracks']} immich-memories-music tracks and "
        f"{ood['flagged_test']:.1%} of its {ood['test_clips']} test clips (AUROC {ood['auroc']:.4f}), but only "
        f"{ood['leave_one_style_out_flagged']:.1%} of the clips of a style left out of its statistics"
    )
    return text, _provenance(data)


def calibration_summary(results: Path) -> tuple[str, str]:
    data = read_json(results / "calibration-ood.json")
    text = (
        f"test-split ECE {data['ece_before']:.3f} → {data['ece_after']:.3f} "
        f"(T = {data['temperature']:.2f} fitted on {data['val_clips']} validation clips)"
    )
    return text, _provenance(data)


def builds(results: Path) -> tuple[str, str]:
    data = read_json(results / "builds.json")
    rows = [[b["build"], b["clips"], b["pieces"], b["how"]] for b in data["builds"]]
    header = ["build", "captions : genres, clips (audio)", "captions : genres, pieces", "how known"]
    return _table(header, rows), f"Source: {data['source']}."


def benchmarks(results: Path) -> tuple[str, str]:
    data = read_json(results / "benchmarks.json")
    rows = [[r["what"], r["command"], r["result"], r["measured"]] for r in data["rows"]]
    return _table(["what", "command", "result", "measured"], rows), f"Source: {data['source']}."


# The five pretraining seeds' probe sweeps of each 20k checkpoint (seed 0 has no suffix): a pooled row averages
# all their cells.
PRETRAINING_SEEDS = range(5)
POOLED = f"pretraining seeds 0-{PRETRAINING_SEEDS[-1]} pooled"
RENDERS_ONLY_SEEDS = tuple("probe-renders-only" + (f"-ps{s}" if s else "") for s in PRETRAINING_SEEDS)
REAL_AND_RENDERS_SEEDS = tuple("probe-real-and-renders" + (f"-ps{s}" if s else "") for s in PRETRAINING_SEEDS)
# The real-music table's rows: (row, sweep folder(s) under docs/results/real-music/, objective). The baseline is the
# renders-only sweep's un-pretrained cells; every sweep shares the dataset, sizes and seeds. A row is shown when
# its folder exists (the first always): the finetuning rows, an ablation of the captions, then the probe rows.
REAL_MUSIC_ROWS = (
    ("baseline (from scratch)", "renders-only", "none"),
    ("renders-only IS", "renders-only", "independent"),
    ("real+renders IS", "real-and-renders", "independent"),
    ("real+renders IS, licence captions", "real-and-renders-licence-captions", "independent"),
    ("random tower, probe", "probe-renders-only", "none"),
    ("renders-only IS, probe", "probe-renders-only", "independent"),
    ("real+renders IS, probe", "probe-real-and-renders", "independent"),
    *(
        (f"{row} IS, pretraining seed {seed}, probe", sweeps[seed], "independent")
        for seed in PRETRAINING_SEEDS[1:]
        for row, sweeps in (("renders-only", RENDERS_ONLY_SEEDS), ("real+renders", REAL_AND_RENDERS_SEEDS))
    ),
    (f"renders-only IS, {POOLED}, probe", RENDERS_ONLY_SEEDS, "independent"),
    (f"real+renders IS, {POOLED}, probe", REAL_AND_RENDERS_SEEDS, "independent"),
    ("renders-only IS, 60k examples", "renders-only-60k", "independent"),
    ("real+renders IS, 60k examples", "real-and-renders-60k", "independent"),
    ("renders-only IS, 60k examples, probe", "probe-renders-only-60k", "independent"),
    ("real+renders IS, 60k examples, probe", "probe-real-and-renders-60k", "independent"),
    ("renders-only IS, 60k examples, pretraining seed 1, probe", "probe-renders-only-60k-ps1", "independent"),
    (
        "real+renders IS, 60k examples, pretraining seed 1, probe",
        "probe-real-and-renders-60k-ps1",
        "independent",
    ),
    ("real+renders IS, 10 epochs (76k examples), probe", "probe-real-and-renders-10ep", "independent"),
    (
        "real+renders IS, 60k examples, audio-audio term, probe",
        "probe-real-and-renders-60k-aa",
        "independent",
    ),
    (
        "real+renders IS, 60k examples, audio-audio term, pretraining seed 1, probe",
        "probe-real-and-renders-60k-aa-ps1",
        "independent",
    ),
)


def _sweeps(sweeps: str | tuple[str, ...]) -> tuple[str, ...]:
    return (sweeps,) if isinstance(sweeps, str) else sweeps


# The four-package rows of frozen towers only (every sweep a probe sweep): the other sets reuse them.
PROBE_ROWS = tuple(row for row in REAL_MUSIC_ROWS if all(s.startswith("probe-") for s in _sweeps(row[1])))
# The same checkpoints on the ten-package held-out set (docs/results/real-music-ten/): its own baseline sweep,
# the finetuning rows of the pretraining seeds, then every probe row.
REAL_MUSIC_TEN_ROWS = (
    ("baseline (from scratch)", "baseline", "none"),
    ("renders-only IS", "renders-only", "independent"),
    ("real+renders IS", "real-and-renders", "independent"),
    (
        f"renders-only IS, {POOLED}",
        tuple(s.removeprefix("probe-") for s in RENDERS_ONLY_SEEDS),
        "independent",
    ),
    (
        f"real+renders IS, {POOLED}",
        tuple(s.removeprefix("probe-") for s in REAL_AND_RENDERS_SEEDS),
        "independent",
    ),
    *PROBE_ROWS,
)
# The ten packages again with N counting labelled tracks (`--n-unit tracks`): its own from-scratch sweep, then
# the probe rows whose sweeps it has.
REAL_MUSIC_TEN_TRACKS_ROWS = (
    ("baseline (from scratch)", "baseline", "none"),
    *PROBE_ROWS,
)
# Each held-out set: its folder under docs/results/ and its rows (the first, the baseline, always shown).
REAL_MUSIC_SETS = {
    "real-music": REAL_MUSIC_ROWS,
    "real-music-ten": REAL_MUSIC_TEN_ROWS,
    "real-music-ten-tracks": REAL_MUSIC_TEN_TRACKS_ROWS,
}
# What N counts in each set's tables.
CLIPS_N = "N = training clips, drawn by whole tracks"
REAL_MUSIC_N = {
    "real-music": CLIPS_N,
    "real-music-ten": CLIPS_N,
    "real-music-ten-tracks": "N = labelled tracks, k of each package first, every clip of a chosen track used",
}
# What each verdict block judges: (held-out set, baseline rows, renders-only row, real+renders row). The probe's
# real+renders row must beat the better of both baselines at each N: the from-scratch CNN finetuned and a random
# tower probed.
PROBE_BASELINES = ("baseline (from scratch)", "random tower, probe")
REAL_MUSIC_VERDICTS = {
    "real-music-verdict": ("real-music", ("baseline (from scratch)",), "renders-only IS", "real+renders IS"),
    "real-music-probe-verdict": (
        "real-music",
        PROBE_BASELINES,
        "renders-only IS, probe",
        "real+renders IS, probe",
    ),
    "real-music-60k-verdict": (
        "real-music",
        ("baseline (from scratch)",),
        "renders-only IS, 60k examples",
        "real+renders IS, 60k examples",
    ),
    "real-music-probe-60k-verdict": (
        "real-music",
        PROBE_BASELINES,
        "renders-only IS, 60k examples, probe",
        "real+renders IS, 60k examples, probe",
    ),
    "real-music-probe-seeds-verdict": (
        "real-music",
        PROBE_BASELINES,
        f"renders-only IS, {POOLED}, probe",
        f"real+renders IS, {POOLED}, probe",
    ),
    "real-music-ten-seeds-verdict": (
        "real-music-ten",
        ("baseline (from scratch)",),
        f"renders-only IS, {POOLED}",
        f"real+renders IS, {POOLED}",
    ),
    "real-music-ten-probe-seeds-verdict": (
        "real-music-ten",
        PROBE_BASELINES,
        f"renders-only IS, {POOLED}, probe",
        f"real+renders IS, {POOLED}, probe",
    ),
    "real-music-ten-tracks-probe-seeds-verdict": (
        "real-music-ten-tracks",
        PROBE_BASELINES,
        f"renders-only IS, {POOLED}, probe",
        f"real+renders IS, {POOLED}, probe",
    ),
    "real-music-ten-probe-verdict": (
        "real-music-ten",
        PROBE_BASELINES,
        "renders-only IS, probe",
        "real+renders IS, probe",
    ),
    "real-music-ten-probe-60k-verdict": (
        "real-music-ten",
        PROBE_BASELINES,
        "renders-only IS, 60k examples, probe",
        "real+renders IS, 60k examples, probe",
    ),
}


def _real_music_f1(results: Path, held_out: str = "real-music") -> dict[str, dict[int, list[float]]]:
    """Row → N → every seed's test macro-F1 on one held-out set."""
    f1 = {}
    rows = REAL_MUSIC_SETS[held_out]
    for row, sweeps, objective in rows:
        sweeps = _sweeps(sweeps)
        if not all((results / held_out / sweep).is_dir() for sweep in sweeps) and row != rows[0][0]:
            continue
        f1[row] = {}
        for sweep in sweeps:
            for (o, n), values in aggregate(load_cells(results / held_out / sweep)).items():
                if o == objective:
                    f1[row].setdefault(n, []).extend(values)
    return f1


def real_music_fewshot(results: Path, held_out: str = "real-music") -> tuple[str, str]:
    f1 = _real_music_f1(results, held_out)
    sizes = sorted({n for per_n in f1.values() for n in per_n})
    rows = [
        [row]
        + [f"{np.mean(f1[row][n]):.3f} ± {np.std(f1[row][n]):.3f}" if n in f1[row] else "–" for n in sizes]
        for row in f1
    ]
    return _table(["model \\ N"] + [str(n) for n in sizes], rows), (
        f"Test macro-F1 (soundtrack = package), mean ± population std over seeds; {REAL_MUSIC_N[held_out]}; "
        f"cell files under `docs/results/{held_out}/<sweep>/<objective>/`."
    )


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def real_music_verdict(results: Path, block: str) -> tuple[str, str]:
    """The target cell by cell: real+renders ≥ baseline + 0.05 at every N, ≥ 1.5× it at the smallest N, above
    renders-only at every N (the baseline: the best of the block's baseline rows at each N)."""
    held_out, baselines, renders_row, real_row = REAL_MUSIC_VERDICTS[block]
    mean = {
        row: {n: float(np.mean(v)) for n, v in per_n.items()}
        for row, per_n in _real_music_f1(results, held_out).items()
    }
    if real_row not in mean:
        raise ResultsError(f"{block}: no cells for row {real_row!r} under {results / held_out}")
    renders, real = mean[renders_row], mean[real_row]
    sizes = sorted(set(renders) & set(real).intersection(*(mean[b] for b in baselines)))
    base = {n: max(mean[b][n] for b in baselines) for n in sizes}
    rows = []
    for n in sizes:
        ratio = real[n] / max(base[n], 1e-9)
        rows.append(
            [
                str(n),
                f"{_signed(round(real[n] - base[n], 3))}: {_verdict(real[n] >= base[n] + 0.05)}",
                f"{ratio:.2f}×: {_verdict(ratio >= 1.5)}" if n == sizes[0] else "–",
                f"{_signed(round(real[n] - renders[n], 3))}: {_verdict(real[n] > renders[n])}",
            ]
        )
    header = [
        "N",
        "real+renders − baseline (≥ +0.05)",
        "÷ baseline (≥ 1.5× at smallest N)",
        "− renders-only (> 0)",
    ]
    against = " and ".join(f"{b!r}" for b in baselines)
    better = " (the better of the two at each N)" if len(baselines) > 1 else ""
    return _table(
        header, rows
    ), f"Means over seeds of {real_row!r} against {against}{better} and {renders_row!r}."


def real_music_retrieval(results: Path) -> tuple[str, str]:
    rows = []
    for path in sorted((results / "real-music" / "retrieval").glob("*.json")):
        data = read_json(path)
        t2m, tracks = data["retrieval"]["text_to_music"], data["heldout"]["tracks"]
        rows.append(
            [path.stem]
            + [f"{t2m[f'recall@{k}']:.3f}" for k in (1, 5, 10)]
            + [f"{tracks} ({min(10, tracks) / tracks:.3f})"]
        )
    header = ["checkpoint", "R@1", "R@5", "R@10", "held-out clips (chance R@10)"]
    return _table(header, rows), "Text→music recall@k; files under `docs/results/real-music/retrieval/`."


def descriptors(results: Path) -> tuple[str, str]:
    """Descriptor accuracy and speed per candidate library (benchmarks/bench_descriptors.py)."""
    data = read_json(results / "descriptors.json")
    rows = [
        [name, str(r["clips"]), f"{r['key_mirex']:.2f}", f"{r['tempo_acc1']:.2f}", f"{r['tempo_acc2']:.2f}",
         f"{r['x_real_time']:.1f}"]
        for name, r in data["results"].items()
        if "key profile" not in name
    ]  # fmt: skip
    header = [
        "candidate @ rate / ground truth",
        "clips",
        "key (MIREX)",
        "tempo Acc1",
        "tempo Acc2",
        "× real time",
    ]
    return _table(header, rows), f"`{data['command']}` ({data['machine']})."


def _profile_block(name: str, part: str) -> Callable[[Path], tuple[str, str]]:
    def render(results: Path) -> tuple[str, str]:
        profile = Profile(results, name)
        return getattr(profile, part)(), profile.source()

    return render


BLOCKS: dict[str, Callable[[Path], tuple[str, str]]] = {
    **{
        f"table6-{name}": _profile_block(name, "table")
        for name in ("full", "quick", "quick-renders-only", "n48-ten-seeds")
    },
    **{
        f"table6-{name}-reading": _profile_block(name, "reading")
        for name in ("full", "quick", "quick-renders-only", "n48-ten-seeds")
    },
    "table6-full-seeds": _profile_block("full", "seeds_at_smallest_n"),
    "table6-thesis": thesis_table,
    "table6-uncapped": uncapped_table,
    "quick-stages": quick_stages,
    "table6-quick-drift": quick_drift,
    "table6-quick-pretrain-seeds": quick_pretrain_seeds,
    "quick-run-time": quick_run_time,
    "tests-run": tests_run,
    "full-run": full_run,
    "full-run-time": full_run_time,
    "full-evaluation": full_evaluation,
    "calibration-ood": calibration_ood,
    "ood-summary": ood_summary,
    "calibration-summary": calibration_summary,
    "builds": builds,
    "benchmarks": benchmarks,
    "descriptors": descriptors,
    "real-music-fewshot": real_music_fewshot,
    "real-music-ten-fewshot": functools.partial(real_music_fewshot, held_out="real-music-ten"),
    "real-music-ten-tracks-fewshot": functools.partial(real_music_fewshot, held_out="real-music-ten-tracks"),
    **{block: functools.partial(real_music_verdict, block=block) for block in REAL_MUSIC_VERDICTS},
    "real-music-retrieval": real_music_retrieval,
}


def render_text(text: str, results: Path) -> str:
    """text with every generated block rewritten: a table between markers on their own lines, a number inline."""

    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in BLOCKS:
            raise ResultsError(f"unknown results block {name!r} (known: {', '.join(sorted(BLOCKS))})")
        body, source = BLOCKS[name](results)
        table = "\n" in body
        if "source" in match["flags"].split() and source:
            body = f"{body.rstrip()}\n\n{source}\n" if table else f"{body} ({source})"
        body = f"\n{body.rstrip()}\n" if table else body
        return f"<!-- results:{name}{match['flags']} -->{body}<!-- /results:{name} -->"

    return BLOCK.sub(replace, text)


def documents(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 with a diff if out of date"
    )
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="the checkout (README.md, docs/, docs/results/)"
    )
    args = parser.parse_args(argv)
    stale = []
    for path in documents(args.root):
        old = path.read_text(encoding="utf-8")
        new = render_text(old, args.root / "docs" / "results")
        if new == old:
            continue
        stale.append(path)
        if args.check:
            name = str(path.relative_to(args.root))
            sys.stdout.writelines(
                difflib.unified_diff(old.splitlines(True), new.splitlines(True), name, name + " (rendered)")
            )
        else:
            path.write_text(new, encoding="utf-8")
    if args.check and stale:
        print(
            f"\n{len(stale)} file(s) differ from docs/results/: run python scripts/render_results.py",
            file=sys.stderr,
        )
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
