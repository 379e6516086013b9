"""The sweep's report: Table 6 (mean ± std macro-F1 per objective and N) beside the thesis' own, the Fig. 17
line plot (macro-F1 against N, log x) and the Fig. 18 box plot (macro-F1 spread per objective)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .collate import OBJECTIVE_LABELS  # noqa: E402

THESIS_SIZES = (48, 160, 400, 800, 1600, 3200)
# Thesis Table 6 (macro-F1 on its 1,038-song test set, seven genres; single runs, no std given).
THESIS_TABLE6 = {
    "none": (0.08, 0.21, 0.27, 0.26, 0.32, 0.35),
    "ntxent": (0.35, 0.41, 0.44, 0.45, 0.43, 0.41),
    "independent": (0.25, 0.42, 0.40, 0.45, 0.45, 0.45),
    "supcon": (0.33, 0.32, 0.37, 0.44, 0.46, 0.52),
    "triplet": (0.15, 0.25, 0.27, 0.29, 0.33, 0.36),
    "matching": (0.31, 0.37, 0.40, 0.40, 0.44, 0.44),
}


def aggregate(runs: list[dict]) -> dict[tuple[str, int], list[float]]:
    """(objective, requested N) → test macro-F1 of every seed."""
    cells: dict[tuple[str, int], list[float]] = defaultdict(list)
    for run in runs:
        cells[(run["objective"], run["n_requested"])].append(run["test"]["macro_f1"])
    return cells


def _size_header(n: int, used: dict[int, int]) -> str:
    return f"{n}" if used.get(n, n) == n else f"{n} (→{used[n]})"


def markdown_table(runs: list[dict], objectives: list[str], sizes: list[int], used: dict[int, int]) -> str:
    cells = aggregate(runs)
    header = "| objective | " + " | ".join(_size_header(n, used) for n in sizes) + " |"
    lines = [header, "|---|" + "---|" * len(sizes)]
    for objective in objectives:
        row = []
        for n in sizes:
            scores = cells.get((objective, n), [])
            row.append(f"{np.mean(scores):.2f} ± {np.std(scores):.2f}" if scores else "–")
        lines.append(f"| {OBJECTIVE_LABELS[objective]} | " + " | ".join(row) + " |")
    seeds = sorted({run["seed"] for run in runs})
    notes = [f"Test macro-F1, mean ± std over seeds {seeds} (population std)."]
    capped = {n: m for n, m in used.items() if m != n}
    if capped:
        notes.append(
            "N → M: the training split has fewer examples than N, so M were used: "
            + ", ".join(f"{n} → {m}" for n, m in sorted(capped.items()))
            + "."
        )
    return "\n".join(lines) + "\n\n" + " ".join(notes) + "\n"


def goal_summary(runs: list[dict], objectives: list[str], sizes: list[int]) -> str:
    """Issue 16's reading of the table: the best pretrained objective (highest mean over N of the per-N means),
    then every (objective, N) below the un-pretrained baseline, and the best one's margin at the smallest and
    largest N (goal: ≥ 2x the baseline at the smallest, ≥ +0.05 at the largest)."""
    cells = {key: float(np.mean(v)) for key, v in aggregate(runs).items()}
    pretrained = [o for o in objectives if o != "none" and all((o, n) in cells for n in sizes)]
    if not pretrained or not sizes or not all(("none", n) in cells for n in sizes):
        return ""
    mean = {o: float(np.mean([cells[(o, n)] for n in sizes])) for o in pretrained + ["none"]}
    best = max(pretrained, key=lambda o: mean[o])
    ranked = ", ".join(
        f"{OBJECTIVE_LABELS[o]} {mean[o]:.3f}" for o in sorted(mean, key=mean.get, reverse=True)
    )
    below = [
        f"{OBJECTIVE_LABELS[o]} at N={n} ({cells[(o, n)]:.3f} < {cells[('none', n)]:.3f})"
        for o in pretrained
        for n in sizes
        if cells[(o, n)] < cells[("none", n)]
    ]
    first, last = sizes[0], sizes[-1]
    return (
        f"Mean over N: {ranked}. Best pretrained objective: **{OBJECTIVE_LABELS[best]}** ({best}).\n\n"
        f"Below the un-pretrained baseline (means over seeds): {'; '.join(below) if below else 'none'}.\n\n"
        f"{OBJECTIVE_LABELS[best]} vs the baseline: {cells[(best, first)] / max(cells[('none', first)], 1e-9):.2f}x "
        f"at N={first}, {cells[(best, last)] - cells[('none', last)]:+.3f} at N={last}.\n"
    )


def thesis_table(objectives: list[str]) -> str:
    lines = [
        "| objective | " + " | ".join(map(str, THESIS_SIZES)) + " |",
        "|---|" + "---|" * len(THESIS_SIZES),
    ]
    for objective in objectives:
        values = " | ".join(f"{v:.2f}" for v in THESIS_TABLE6[objective])
        lines.append(f"| {OBJECTIVE_LABELS[objective]} | {values} |")
    return (
        "\n".join(lines)
        + "\n\nThesis Table 6 (its own corpus, seven genres, 1,038 test songs; single runs).\n"
    )


def line_plot(runs: list[dict], objectives: list[str], path: Path) -> Path:
    """Fig. 17: mean macro-F1 (± std) against the training size actually used, log x axis."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for objective in objectives:
        by_n: dict[int, list[float]] = defaultdict(list)
        for run in runs:
            if run["objective"] == objective:
                by_n[run["n_used"]].append(run["test"]["macro_f1"])
        if not by_n:
            continue
        ns = sorted(by_n)
        means = [np.mean(by_n[n]) for n in ns]
        stds = [np.std(by_n[n]) for n in ns]
        ax.errorbar(ns, means, yerr=stds, marker="o", capsize=3, label=OBJECTIVE_LABELS[objective])
    ax.set_xscale("log")
    sizes = sorted({run["n_used"] for run in runs})
    ax.set_xticks(sizes, [str(n) for n in sizes])  # the sizes themselves, not powers of ten
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("training examples (log scale)")
    ax.set_ylabel("test macro-F1")
    ax.set_title("Models across training-set sizes (cf. thesis Fig. 17)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def box_plot(runs: list[dict], objectives: list[str], path: Path) -> Path:
    """Fig. 18: the spread of macro-F1 over every size and seed, one box per objective."""
    present = [o for o in objectives if any(r["objective"] == o for r in runs)]
    data = [[r["test"]["macro_f1"] for r in runs if r["objective"] == o] for o in present]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.boxplot(data, tick_labels=[OBJECTIVE_LABELS[o] for o in present])
    ax.set_ylabel("test macro-F1 (all sizes and seeds)")
    ax.set_title("Performance distribution per objective (cf. thesis Fig. 18)")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _calibrated(runs: list[dict]) -> list[dict]:
    return [r for r in runs if r.get("calibration")]  # cells finished before calibration existed have none


def calibration_table(runs: list[dict], objectives: list[str], sizes: list[int], used: dict[int, int]) -> str:
    """Test-split ECE before → after temperature scaling, mean over seeds, per objective and N."""
    cells: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    for run in _calibrated(runs):
        cal = run["calibration"]
        cells[(run["objective"], run["n_requested"])].append((cal["ece_before"], cal["ece_after"]))
    header = "| objective | " + " | ".join(_size_header(n, used) for n in sizes) + " |"
    lines = [header, "|---|" + "---|" * len(sizes)]
    for objective in objectives:
        row = []
        for n in sizes:
            pairs = np.asarray(cells.get((objective, n), []))
            row.append(f"{pairs[:, 0].mean():.3f} → {pairs[:, 1].mean():.3f}" if len(pairs) else "–")
        lines.append(f"| {OBJECTIVE_LABELS[objective]} | " + " | ".join(row) + " |")
    return (
        "\n".join(lines)
        + "\n\nTest-split expected calibration error (15 bins) before → after temperature scaling (T fitted on "
        "each cell's validation part), mean over seeds.\n"
    )


def calibration_plot(runs: list[dict], path: Path) -> Path | None:
    """Reliability diagram per training size, every objective's and seed's test clips pooled."""
    from .calibration import merge_bins, reliability_diagram

    by_n: dict[int, list[dict]] = defaultdict(list)
    for run in _calibrated(runs):
        by_n[run["n_used"]].append(run["calibration"])
    if not by_n:
        return None
    panels = {
        f"N = {n}": {
            "before": merge_bins([c["bins_before"] for c in by_n[n]]),
            "after": merge_bins([c["bins_after"] for c in by_n[n]]),
        }
        for n in sorted(by_n)
    }
    return reliability_diagram(panels, path, "Test-split reliability before and after temperature scaling")
