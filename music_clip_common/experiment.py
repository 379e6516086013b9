"""The experiment's facts, stated once: profiles, training budgets, the corpus window and default paths.

Two words, one meaning each:
- a *profile* is a whole run of the main job (`main_job.py --profile`, `./run.sh --profile`): which build, which
  objectives, N and seeds, and the training budget its runs use;
- a *budget* is how long one training run may train (epochs, examples seen): `train.py sweep --budget` (also
  accepted as `--profile`, the flag's first name); the "full" profile trains under the "cpu" budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The bundled corpus is 15-s clips: a 15-s CNN window (235 frames) instead of the thesis' 4.5 minutes, which would
# be 94 % padding and 18x the CNN work per clip.
CORPUS_WINDOW_SAMPLES = 240_000

# The objective the main job's Space serves: the one with the highest mean test macro-F1 over N in Table 6 on the
# full build (README, "Result"). IS treats each caption sentence as its own positive.
START_OBJECTIVE = "independent"

# Budgets: "full" follows the thesis (unfreeze at epoch 10 of 30; ~9 h for the whole grid on 2 CPU cores); "cpu"
# keeps that schedule but caps each finetuning run at 4,000 training examples seen (epochs and the head-only
# phase shrink together for large N); "quick" fits the 30-minute demo. `pretrain_examples` caps pretraining's
# examples seen, so a large captions config gets fewer epochs (never below one): "cpu" keeps about what Table 6's
# pretraining saw (10 epochs over ~1,700 training captions of the full build); "quick" keeps the quick job within
# 20 minutes on 2 idle cores.
BUDGETS: dict[str, dict[str, int | None]] = {
    "full": {"pretrain_epochs": 20, "finetune_epochs": 30, "unfreeze_epoch": 10, "max_examples": None,
             "pretrain_examples": None},
    "cpu": {"pretrain_epochs": 10, "finetune_epochs": 30, "unfreeze_epoch": 10, "max_examples": 4000,
            "pretrain_examples": 20_000},
    "quick": {"pretrain_epochs": 3, "finetune_epochs": 8, "unfreeze_epoch": 3, "max_examples": None,
              "pretrain_examples": 6_000},
}  # fmt: skip


@dataclass(frozen=True)
class Profile:
    """One main-job run: the build, the few-shot grid, the budget its training runs under, the disk it needs."""

    size: str  # build_dataset.py --size
    # Pretrained objectives in the sweep (plus the un-pretrained baseline); () = every objective, from
    # configuration_music_clip.OBJECTIVES (not imported here: that module imports torch).
    objectives: tuple[str, ...]
    sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    budget: str  # a key of BUDGETS (train.py sweep --budget)
    min_free_gb: float
    one_epoch: bool = False  # every stage trains one epoch (CI's smoke run)
    # Build the real-music source's pretraining part (`--source debian`: downloads Debian packages) right after
    # the corpus, and serve its tracks in the Space beside the renders. Off only for CI's smoke run, which must
    # download nothing.
    real_music: bool = True


PROFILES = {
    "smoke": Profile("small", (START_OBJECTIVE,), (16,), (0,), "quick", 1, one_epoch=True, real_music=False),
    # Disk: the quick job left 14 GB (music21-quick 11 GB with its decode cache, debian-quick 1.8 GB, runs 0.4 GB,
    # the Debian packages ~1 GB); the full job's is scaled from it (its build and the full real part: 3.9 GB +
    # 4.9 GB of packages), not measured.
    "quick": Profile("quick", (START_OBJECTIVE,), (48, 160, 400, 800), (0, 1), "quick", 15),
    "full": Profile("full", (), (48, 160, 400, 800, 1600, 3200), (0, 1, 2), "cpu", 40),
}
DEFAULT_PROFILE = "quick"


@dataclass(frozen=True)
class ExperimentPaths:
    """Where one profile's main job puts its work under ROOT (the Space's defaults are the quick profile's)."""

    data: Path
    runs: Path
    sweep: Path
    model: Path
    classifier: Path


def experiment_paths(root: Path, profile: str = DEFAULT_PROFILE) -> ExperimentPaths:
    runs = Path(root) / "runs" / profile
    return ExperimentPaths(
        data=Path(root) / "data" / f"music21-{PROFILES[profile].size}",
        runs=runs,
        sweep=runs / "sweep",
        model=runs / "sweep" / "pretrained" / START_OBJECTIVE,  # where the sweep pretrains it
        classifier=runs / "classifier",
    )
