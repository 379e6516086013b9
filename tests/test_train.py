"""train.py end to end on a tiny dataset folder in the builder's format (Parquet + README `configs:`).

Mels are random (training never decodes audio); the text tower is the real packaged MiniLM. Each test runs the
real CLI entry point (`train.main`) or the same code in a subprocess where a real `kill -9` is needed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_same_training_result
from datasets import Array2D, ClassLabel, Dataset, Features, List, Value
from safetensors.torch import load_file

import train
from music_clip_train.subsets import nested_order

REPO = Path(__file__).resolve().parents[1]
WINDOW = 65_536  # 65 frames: about the smallest window the thesis CNN accepts; keeps CPU steps tiny
LABELS = ("calm", "happy", "quiet_tender")  # one label id with an underscore, as ClassLabel names often have
OBJECTIVES = ("ntxent", "independent", "supcon", "triplet", "matching")

torch.set_num_threads(1)  # on a shared 2-core machine one thread per process is several times faster


def _mels(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    return [rng.random((60 + int(rng.integers(0, 30)), 64), dtype=np.float32) for _ in range(n)]


def write_dataset(
    root: Path,
    n_captions: int = 10,
    n_train: int = 24,
    n_test: int = 6,
    seed: int = 0,
    drop: str | None = None,
    separable: bool = False,
    caption_groups: int | None = None,
    clips_per_track: int = 1,
) -> Path:
    """A dataset folder with the columns of DESIGN.md "Dataset folder" (minus audio: training never reads it).
    `separable`: each genre clip's label raises its own third of the mel bands, so the classes can be told apart.
    `caption_groups`: the caption clips are cut from this many recordings (clip i from recording i mod k).
    `clips_per_track`: genre clips i of one track share its group and label (track i // k, label track mod 3)."""
    rng = np.random.default_rng(seed)
    common = {
        "track_id": Value("string"),
        "group_id": Value("string"),
        "source": Value("string"),
        "mel": Array2D((None, 64), "float32"),
        "mel_length": Value("int64"),
    }
    moods = [LABELS[i % 3] for i in range(n_captions)]
    sentences = [
        [f"The song feels {m}.", f"It is about place number {i}.", f"A {m} acoustic tune."]
        for i, m in enumerate(moods)
    ]
    mels = _mels(rng, n_captions)
    captions = {
        "track_id": [f"cap{i}" for i in range(n_captions)],
        "group_id": [f"capg{i % (caption_groups or n_captions)}" for i in range(n_captions)],
        "source": ["fixture"] * n_captions,
        "mel": mels,
        "mel_length": [len(m) for m in mels],
        "caption": [" ".join(s) for s in sentences],
        "sentences": sentences,
    }
    if drop:
        captions.pop(drop)
    cap_features = Features({**common, "caption": Value("string"), "sentences": List(Value("string"))})
    cap_features = Features({k: v for k, v in cap_features.items() if k in captions})
    (root / "captions").mkdir(parents=True)
    Dataset.from_dict(captions, features=cap_features).to_parquet(
        str(root / "captions/train-00000-of-00001.parquet")
    )
    genre_features = Features({**common, "genre": ClassLabel(names=list(LABELS))})
    (root / "genres").mkdir()
    for split, n in (("train", n_train), ("test", n_test)):
        mels = _mels(rng, n)
        labels = [(i // clips_per_track) % 3 for i in range(n)]
        for mel, label in zip(mels if separable else [], labels):
            mel[:, label * 21 : (label + 1) * 21] += 1.0
        Dataset.from_dict(
            {
                "track_id": [f"{split}{i}" for i in range(n)],
                "group_id": [f"{split}g{i // clips_per_track}" for i in range(n)],
                "source": ["fixture"] * n,
                "mel": mels,
                "mel_length": [len(m) for m in mels],
                "genre": labels,
            },
            features=genre_features,
        ).to_parquet(str(root / f"genres/{split}-00000-of-00001.parquet"))
    (root / "README.md").write_text(
        "---\nconfigs:\n- config_name: captions\n  data_files:\n  - split: train\n    path: captions/train-*.parquet\n"
        "- config_name: genres\n  data_files:\n  - split: train\n    path: genres/train-*.parquet\n"
        "  - split: test\n    path: genres/test-*.parquet\n---\n# tiny test corpus\n"
    )
    (root / "feature_extractor").mkdir()
    (root / "feature_extractor/preprocessor_config.json").write_text(
        json.dumps(
            {
                "feature_size": 64,
                "sampling_rate": 16000,
                "n_fft": 2048,
                "hop_length": 1024,
                "window_samples": WINDOW,
            }
        )
    )
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("ds"))


@pytest.fixture(scope="module")
def pretrained(dataset, tmp_path_factory) -> Path:
    """One SCL checkpoint shared by the finetune and sweep tests (laid out as a --pretrained-dir)."""
    root = tmp_path_factory.mktemp("pretrained")
    assert (
        train.main(
            [
                "pretrain",
                "--dataset",
                str(dataset),
                "--objective",
                "supcon",
                "--output",
                str(root / "supcon"),
                "--epochs",
                "1",
                "--batch-size",
                "16",
                "--holdout",
                "0.2",
            ]
        )
        == 0
    )
    return root


def _pretrain_args(dataset: Path, objective: str, output: Path, *extra: str) -> list[str]:
    return [
        "pretrain",
        "--dataset",
        str(dataset),
        "--objective",
        objective,
        "--output",
        str(output),
        "--batch-size",
        "16",
        "--holdout",
        "0.2",
        *extra,
    ]


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_each_objective_pretrains_and_saves_a_loadable_folder(dataset, tmp_path, objective) -> None:
    from transformers import AutoModel

    out = tmp_path / objective
    assert train.main(_pretrain_args(dataset, objective, out, "--epochs", "1")) == 0
    result = json.loads((out / "train_results.json").read_text())
    assert result["steps"] == 1 and result["train_tracks"] == 8 and result["heldout_tracks"] == 2
    assert result["dataset"] == str(dataset)  # one dataset: its name, as before several could pretrain
    record = result["history"][0]
    assert np.isfinite(record["heldout_loss"])
    assert 0 <= record["heldout_recall"]["text_to_music"]["recall@1"] <= 1
    card = (out / "README.md").read_text()
    assert f"(`{objective}`)" in card and "frozen" in card and "Citation" in card
    assert (out / "preprocessor_config.json").is_file() and (out / "processor_config.json").is_file()
    model = AutoModel.from_pretrained(out, trust_remote_code=True)
    assert model.config.objective == objective and model.config.window_samples == WINDOW
    saved = load_file(out / "model.safetensors")
    assert torch.equal(model.state_dict()["audio_projection.z.weight"], saved["audio_projection.z.weight"])
    shutil.rmtree(out)  # ~100 MB (the text tower) per objective: keep the test run's disk use small


def test_frozen_text_tower_is_untouched_and_heads_train(dataset, pretrained) -> None:
    from transformers import AutoModel

    from modeling_music_clip import MusicClipModel, default_text_tower

    trained = MusicClipModel.from_pretrained(pretrained / "supcon")
    original = AutoModel.from_pretrained(default_text_tower())
    for name, value in original.state_dict().items():
        assert torch.equal(trained.text_model.state_dict()[name], value), name
    fresh = MusicClipModel.from_text_pretrained(objective="supcon", window_samples=WINDOW)
    assert not torch.equal(fresh.text_projection.v.weight, trained.text_projection.v.weight)


def test_finetune_from_pretrained_trains_head_first(dataset, pretrained, tmp_path) -> None:
    out = tmp_path / "ft"
    # One epoch with the tower frozen until epoch 5: the audio tower (BatchNorm statistics included) must not move.
    assert (
        train.main(
            [
                "finetune",
                "--dataset",
                str(dataset),
                "--init",
                str(pretrained / "supcon"),
                "--output",
                str(out),
                "--n",
                "18",
                "--epochs",
                "1",
                "--unfreeze-epoch",
                "5",
                "--batch-size",
                "8",
            ]
        )
        == 0
    )
    result = json.loads((out / "results.json").read_text())
    assert (result["n_used"], result["n_fit"] + result["n_val"]) == (18, 18)
    assert result["history"][0]["tower_frozen"] is True
    assert 0 <= result["test"]["macro_f1"] <= 1 and result["test"]["num_examples"] == 6
    source, tuned = load_file(pretrained / "supcon/model.safetensors"), load_file(out / "model.safetensors")
    tower = [k for k in tuned if k.startswith("audio_encoder.")]
    assert any("running_mean" in k for k in tower)
    for key in tower + ["audio_projection.v.weight"]:
        assert torch.equal(source[key], tuned[key]), key
    from transformers import pipeline

    classify = pipeline("audio-classification", model=str(out), trust_remote_code=True)
    one_second = np.random.default_rng(0).uniform(-0.5, 0.5, 16000).astype(np.float32)  # silence is refused
    labels = {p["label"] for p in classify(one_second, top_k=3)}
    assert labels == set(LABELS)


def test_finetune_from_scratch_unfreezes_at_once(dataset, tmp_path) -> None:
    out = tmp_path / "scratch"
    assert (
        train.main(
            [
                "finetune",
                "--dataset",
                str(dataset),
                "--init",
                "none",
                "--output",
                str(out),
                "--n",
                "12",
                "--epochs",
                "2",
                "--batch-size",
                "8",
            ]
        )
        == 0
    )
    result = json.loads((out / "results.json").read_text())
    assert result["unfreeze_epoch"] == 0 and result["history"][0]["tower_frozen"] is False
    assert "from scratch" in (out / "README.md").read_text()


def test_each_dataset_folder_reads_its_own_rows(tmp_path) -> None:
    from music_clip_train.data import load_genres

    # Same folder name, same card, same file names: datasets' own cache key cannot tell them apart.
    first = write_dataset(tmp_path / "a" / "ds", n_train=24)
    second = write_dataset(tmp_path / "b" / "ds", n_train=36, clips_per_track=3)
    assert (len(load_genres(str(first)).train), len(load_genres(str(second)).train)) == (24, 36)
    assert len(set(load_genres(str(second)).train.group_ids)) == 12
    shutil.rmtree(first)  # rebuilt in place, with other rows
    assert len(load_genres(str(write_dataset(first, n_train=30))).train) == 30


def test_finetune_counting_tracks_trains_on_every_clip_of_them(tmp_path) -> None:
    dataset = write_dataset(tmp_path / "ds", n_train=36, n_test=6, clips_per_track=3)  # 12 tracks of 3 clips
    out = tmp_path / "tracks"
    argv = f"finetune --dataset {dataset} --init none --output {out} --n 6 --n-unit tracks --epochs 1"
    assert train.main([*argv.split(), "--batch-size", "8"]) == 0
    result = json.loads((out / "results.json").read_text())
    assert (result["n_unit"], result["n_used"], result["n_tracks"], result["n_clips"]) == ("tracks", 6, 6, 18)
    assert result["n_fit"] + result["n_val"] == 18  # validation is carved from the 18 clips, by track
    assert train.main([*argv.replace("--n 6", "--n 13").split()]) == 2  # there are 12 tracks


def test_nested_stratified_subsets() -> None:
    labels = np.repeat([0, 1, 2], [40, 20, 10])
    order = nested_order(labels, seed=3)
    assert sorted(order.tolist()) == list(range(70))
    for n in (7, 14, 35):
        counts = np.bincount(labels[order[:n]], minlength=3)
        assert np.all(np.abs(counts - n * np.array([40, 20, 10]) / 70) <= 1), (n, counts)
    assert not np.array_equal(order, nested_order(labels, seed=4))


def test_sweep_writes_report_and_skips_finished_cells(dataset, pretrained, tmp_path, capsys) -> None:
    out = tmp_path / "sweep"
    common = f"--dataset {dataset} --output {out} --objectives none supcon --sizes 12 100 --pretrained-dir {pretrained}"
    common += " --finetune-epochs 1 --unfreeze-epoch 1 --batch-size 8"
    argv = ["sweep", *common.split(), "--seeds", "0", "1"]
    assert train.main(argv) == 0
    first = capsys.readouterr().out
    assert (
        "N=100 is more than the 24 training examples; using 24" in first and "8 cells run, 0 skipped" in first
    )
    runs = json.loads((out / "runs.json").read_text())
    assert len(runs) == 8 and {r["n_used"] for r in runs} == {12, 24}
    # Seed-major: every cell of seed 0 is written before any of seed 1, so a stopped sweep has whole grids.
    written = sorted(out.glob("runs/*/*/results.json"), key=lambda p: p.stat().st_mtime_ns)
    seeds = [json.loads(p.read_text())["seed"] for p in written]
    assert seeds == [0, 0, 0, 0, 1, 1, 1, 1]
    table = (out / "table.md").read_text()
    assert "| SCL |" in table and "| Audio Encoder |" in table and "100 (→24)" in table and "±" in table
    readme = (out / "README.md").read_text()
    assert "Thesis Table 6" in readme and "| 0.08 | 0.21 | 0.27 | 0.26 | 0.32 | 0.35 |" in readme
    for png in ("macro_f1_vs_n.png", "macro_f1_boxplot.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert train.main(argv) == 0
    assert "0 cells run, 8 skipped" in capsys.readouterr().out
    assert (out / "table.md").read_text() == table
    card = (pretrained / "supcon" / "README.md").read_text()
    assert card.count("## Few-shot genre sweep") == 1 and table in card
    assert (pretrained / "supcon" / "sweep_macro_f1_vs_n.png").is_file()
    # A narrower re-run reports only its own grid; the other cells stay on disk.
    assert train.main(["sweep", *common.split(), "--seeds", "0"]) == 0
    assert len(json.loads((out / "runs.json").read_text())) == 4


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown objective", "unknown objective 'clip'"),
        ("missing column", "lacks column(s) sentences"),
        ("missing config", "has no 'genres' config"),
        ("other architecture", "holds a 'bert' model"),
        ("empty split", "a split with no rows?"),
        ("too many", "--n 500 is larger than the genres train split (24 examples)"),
    ],
)
def test_bad_input_stops_before_training(dataset, tmp_path, capsys, case, message) -> None:
    from modeling_music_clip import default_text_tower

    out = tmp_path / "out"
    if case == "unknown objective":
        argv = _pretrain_args(dataset, "clip", out)
    elif case == "missing column":
        argv = _pretrain_args(write_dataset(tmp_path / "nocol", drop="sentences"), "supcon", out)
    elif case == "missing config":
        bad = write_dataset(tmp_path / "noconf")
        readme = (bad / "README.md").read_text()
        (bad / "README.md").write_text(readme.split("- config_name: genres")[0] + "---\n")
        argv = ["finetune", "--dataset", str(bad), "--init", "none", "--output", str(out)]
    elif case == "other architecture":
        argv = ["finetune", "--dataset", str(dataset), "--init", default_text_tower(), "--output", str(out)]
    elif case == "empty split":
        argv = [
            "finetune",
            "--dataset",
            str(write_dataset(tmp_path / "empty", n_test=0)),
            "--init",
            "none",
            "--output",
            str(out),
        ]
    else:
        argv = ["finetune", "--dataset", str(dataset), "--init", "none", "--output", str(out), "--n", "500"]
    assert train.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()  # nothing trained, nothing written


def _run_cli(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_pretrain_resumes_after_kill_9_with_the_same_result(dataset, tmp_path) -> None:
    # Triplet samples positives/negatives with the RNG, so equality also checks that the RNG state is restored.
    # 8 tracks: 2 steps per epoch; checkpoints at steps 2 and 3 (3 is mid-epoch: resuming skips a batch).
    common = ["--epochs", "2", "--batch-size", "4", "--checkpoint-every", "1"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    # The uninterrupted run saves no checkpoints (writing them must not change the result either).
    assert train.main(_pretrain_args(dataset, "triplet", whole, *common, "--checkpoint-every", "100")) == 0
    crash = _run_cli(_pretrain_args(dataset, "triplet", killed, *common, "--debug-kill-after-step", "4"))
    assert crash.returncode == -9, crash.stderr[-2000:]
    # Killed after step 4 before its checkpoint: the newest is step 3, so one interval is lost, no more.
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["step-0000002", "step-0000003"]
    assert train.main(_pretrain_args(dataset, "triplet", killed, *common, "--resume")) == 0
    assert_same_training_result(whole, killed)


def test_finetune_resumes_after_kill_9_with_the_same_result(dataset, pretrained, tmp_path, capsys) -> None:
    def argv(out: Path, *extra: str) -> list[str]:
        return [
            "finetune",
            "--dataset",
            str(dataset),
            "--init",
            str(pretrained / "supcon"),
            "--output",
            str(out),
            "--n",
            "18",
            "--epochs",
            "3",
            "--unfreeze-epoch",
            "1",
            "--batch-size",
            "8",
            "--checkpoint-every",
            "2",
            *extra,
        ]

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert train.main(argv(whole)) == 0
    crash = _run_cli(argv(killed, "--debug-kill-after-epoch", "3"))
    assert crash.returncode == -9, crash.stderr[-2000:]
    assert [p.name for p in (killed / "checkpoints").iterdir()] == ["step-0000002"]
    assert train.main(argv(killed, "--resume")) == 0
    a, b = load_file(whole / "model.safetensors"), load_file(killed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    results = [json.loads((d / "results.json").read_text()) for d in (whole, killed)]
    assert results[0]["history"] == results[1]["history"] and results[0]["test"] == results[1]["test"]
    capsys.readouterr()
    assert train.main(argv(killed, "--resume")) == 0  # finished with the same arguments: nothing to do
    assert "already finished" in capsys.readouterr().out


def test_evaluate_writes_json_and_card(dataset, pretrained) -> None:
    model = pretrained / "supcon"
    assert train.main(["evaluate", "--model", str(model), "--dataset", str(dataset)]) == 0
    scores = json.loads((model / "evaluation.json").read_text())
    assert scores["heldout"] == {"fraction": 0.2, "seed": 0, "tracks": 2, "same_split_as_pretraining": True}
    t2m = scores["retrieval"]["text_to_music"]
    assert t2m["num_queries"] == 6 and t2m["num_candidates"] == 2  # three sentences per held-out track
    assert (
        scores["zero_shot"]["prompts"][::2]
        == ["This is a sound of calm.", "This is a sound of quiet tender."]
        and scores["zero_shot"]["num_examples"] == 6
    )
    card = (model / "README.md").read_text()
    assert card.count("## Evaluation (`train.py evaluate`)") == 1 and '"map@10"' in card


@pytest.mark.slow
def test_real_build_pretrain_finetune_evaluate(tmp_path) -> None:
    """The real chain on the 28 bundled Opus tracks: build_dataset.py → pretrain → finetune → evaluate (~60 s)."""
    data = tmp_path / "immich"
    build = subprocess.run(
        [sys.executable, str(REPO / "build_dataset.py"), "--source", "immich", "--output", str(data)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    model, clf = tmp_path / "supcon", tmp_path / "clf"
    assert (
        train.main(_pretrain_args(data, "supcon", model, "--epochs", "2", "--window-samples", "240000")) == 0
    )
    assert json.loads((model / "config.json").read_text())["window_samples"] == 240000
    assert (
        train.main(
            [
                "finetune",
                "--dataset",
                str(data),
                "--init",
                str(model),
                "--output",
                str(clf),
                "--epochs",
                "2",
                "--unfreeze-epoch",
                "1",
                "--batch-size",
                "8",
            ]
        )
        == 0
    )
    assert json.loads((clf / "results.json").read_text())["test"]["num_examples"] > 0
    assert train.main(["evaluate", "--model", str(model), "--dataset", str(data)]) == 0
    assert (
        json.loads((model / "evaluation.json").read_text())["retrieval"]["text_to_music"]["num_queries"] > 0
    )


def test_sweep_pretrains_a_missing_checkpoint_itself(dataset, tmp_path, capsys) -> None:
    out = tmp_path / "sweep"
    argv = f"sweep --dataset {dataset} --output {out} --objectives none ntxent --sizes 12 --seeds 0 --profile quick"
    assert (
        train.main([*argv.split(), "--pretrain-epochs", "1", "--finetune-epochs", "1", "--batch-size", "8"])
        == 0
    )
    checkpoint = json.loads((out / "pretrained" / "ntxent" / "train_results.json").read_text())
    assert checkpoint["epochs"] == 1 and checkpoint["objective"] == "ntxent"
    runs = {r["objective"]: r for r in json.loads((out / "runs.json").read_text())}
    assert runs["ntxent"]["init"] == str(out / "pretrained" / "ntxent")
    assert runs["none"]["window_samples"] == runs["ntxent"]["window_samples"] == WINDOW
    assert "## Few-shot genre sweep" in (out / "pretrained" / "ntxent" / "README.md").read_text()


def test_sweep_pretrains_on_its_dataset_and_the_extra_pretraining_datasets(dataset, tmp_path) -> None:
    extra = write_dataset(tmp_path / "extra", n_captions=6, seed=1)
    out = tmp_path / "sweep"
    argv = (
        f"sweep --dataset {dataset} --pretrain-dataset {extra} --output {out} --objectives ntxent --sizes 12"
    )
    argv += " --seeds 0 --budget quick --pretrain-epochs 1 --finetune-epochs 1 --batch-size 8"
    assert train.main(argv.split()) == 0
    checkpoint = json.loads((out / "pretrained" / "ntxent" / "train_results.json").read_text())
    assert checkpoint["datasets"] == [str(dataset), str(extra)]
    assert checkpoint["train_tracks"] + checkpoint["heldout_tracks"] == 10 + 6


def test_example_budget_shortens_large_runs_and_their_head_only_phase() -> None:
    from music_clip_train.finetune import budgeted_schedule

    assert budgeted_schedule(30, 10, 48, 4000) == (30, 10)  # 1,440 examples: within budget, thesis schedule
    assert budgeted_schedule(30, 10, 320, 4000) == (13, 4)  # ceil(4000 / 320) epochs, unfreeze scaled 10/30
    assert budgeted_schedule(30, 10, 3200, 4000) == (2, 1)
    assert budgeted_schedule(30, 10, 3200, None) == (30, 10)  # no budget: unchanged


def test_classifier_is_calibrated_and_evaluate_reports_ood(dataset, pretrained, tmp_path) -> None:
    import soundfile as sf

    pre = pretrained / "supcon"
    assert json.loads((pre / "config.json").read_text())["ood_threshold"] is not None
    assert "## Out-of-distribution score" in (pre / "README.md").read_text()
    out = tmp_path / "clf"
    args = ["--dataset", str(dataset), "--init", str(pre), "--output", str(out), "--epochs", "2"]
    assert train.main(["finetune", *args, "--unfreeze-epoch", "1", "--batch-size", "8"]) == 0
    result = json.loads((out / "results.json").read_text())
    config = json.loads((out / "config.json").read_text())
    cal = result["calibration"]
    assert config["calibration_temperature"] == cal["temperature"] != 1.0  # fitted, stored in the config
    assert config["ood_threshold"] == result["ood"]["threshold"]
    assert cal["validation_clips"] == result["n_val"] and sum(cal["bins_after"]["counts"]) == 6
    card = (out / "README.md").read_text()
    assert f"| before (T = 1) | {cal['ece_before']:.4f} |" in card and "## Out-of-distribution score" in card
    assert (out / "reliability.png").stat().st_size > 10_000

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "sub").mkdir(parents=True)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.float32)
    sf.write(elsewhere / "a.wav", tone, 16000)
    sf.write(elsewhere / "sub" / "b.flac", tone[::-1].copy(), 16000)
    (elsewhere / "notes.txt").write_text("not audio")
    evaluate = ["evaluate", "--model", str(out), "--dataset", str(dataset), "--ood-audio-dir", str(elsewhere)]
    assert train.main(evaluate) == 0
    scores = json.loads((out / "evaluation.json").read_text())
    assert scores["calibration"]["temperature"] == cal["temperature"]
    assert scores["test"]["macro_f1"] == result["test"]["macro_f1"]
    ood = scores["ood"]
    assert ood["in_domain_test"]["clips"] == 6 and set(ood["audio_dir"]["scores"]) == {"a.wav", "sub/b.flac"}
    # Pure tones are nothing like the fixture's noise-like mels: all flagged, perfectly separated.
    assert ood["audio_dir"]["flag_rate"] == 1.0 and ood["auroc"] == 1.0
    assert set(ood["near_ood"]["per_style"]) == set(LABELS)


def test_pretrain_on_two_datasets_trains_on_their_union_and_records_both(dataset, tmp_path, capsys) -> None:
    from music_clip_train.pretrain import load_pretraining_captions

    other = write_dataset(tmp_path / "other", seed=1)  # the same track and group ids as `dataset`
    data, _ = load_pretraining_captions([str(dataset), str(other)])
    assert len(data) == 20 and len(set(data.group_ids)) == 20  # namespaced by dataset: no group spans both
    out, out_repeated = tmp_path / "both", tmp_path / "both-repeated"
    both = _pretrain_args(dataset, "independent", out, "--epochs", "1")
    both.insert(both.index(str(dataset)) + 1, str(other))  # --dataset A B
    assert train.main(both) == 0
    flags = ["--dataset", str(other), "--epochs", "1"]  # --dataset A ... --dataset B
    assert train.main(_pretrain_args(dataset, "independent", out_repeated, *flags)) == 0
    for folder in (out, out_repeated):
        result = json.loads((folder / "train_results.json").read_text())
        assert result["datasets"] == result["args"]["dataset"] == [str(dataset), str(other)]
        assert result["train_tracks"] + result["heldout_tracks"] == 20
        card = (folder / "README.md").read_text()
        assert f"`{dataset}`, `{other}` captions config" in card


def test_pretrain_refuses_datasets_with_different_mel_front_ends(dataset, tmp_path, capsys) -> None:
    other = write_dataset(tmp_path / "other", seed=1)
    config = other / "feature_extractor/preprocessor_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "hop_length": 512}))
    out = tmp_path / "refused"
    assert train.main(_pretrain_args(dataset, "independent", out, "--dataset", str(other))) == 2
    err = capsys.readouterr().err
    assert "different mel front ends" in err and "hop_length: 1024 vs 512" in err
    config.write_text(
        json.dumps({**json.loads(config.read_text()), "hop_length": 1024, "window_samples": 32768})
    )
    assert train.main(_pretrain_args(dataset, "independent", out, "--dataset", str(other))) == 2
    assert "record different audio windows" in capsys.readouterr().err
    assert not out.exists()


def _parse_pretrain(argv: list[str]):
    from transformers import HfArgumentParser

    from music_clip_train.pretrain import PretrainArgs

    (args,) = HfArgumentParser(PretrainArgs).parse_args_into_dataclasses(argv[1:])
    return args


def test_pretrain_with_the_audio_audio_term_records_it_and_pairs_its_batches(tmp_path) -> None:
    from accelerate import Accelerator
    from transformers import AutoModel

    from music_clip_train.pretrain import PretrainSpec

    data = write_dataset(tmp_path / "data", n_captions=24, caption_groups=6)  # 4 clips per recording
    plain, paired = tmp_path / "plain", tmp_path / "paired"
    assert train.main(_pretrain_args(data, "independent", plain, "--epochs", "1")) == 0
    flags = ["--epochs", "1", "--audio-contrast-weight", "0.5"]
    assert train.main(_pretrain_args(data, "independent", paired, *flags)) == 0
    result = json.loads((paired / "train_results.json").read_text())
    assert result["audio_contrast_weight"] == 0.5
    assert json.loads((plain / "train_results.json").read_text())["audio_contrast_weight"] == 0.0
    assert (
        "weight 0.5, temperature 0.1: clips of one track are positives" in (paired / "README.md").read_text()
    )
    assert AutoModel.from_pretrained(paired, trust_remote_code=True).config.audio_contrast_weight == 0.5
    losses = [
        json.loads((f / "train_results.json").read_text())["history"][0]["train_loss"]
        for f in (plain, paired)
    ]
    assert losses[1] > losses[0]  # the objective plus a positive audio-audio term (on other batches)
    # The training and held-out batches hold each track's clips two by two.
    spec = PretrainSpec(_parse_pretrain(_pretrain_args(data, "independent", tmp_path / "spec", *flags)))
    spec.accelerator = Accelerator(cpu=True)
    parts = spec.setup(spec.accelerator)
    for sampler, split in ((parts.sampler, spec.train), (spec.held_loader.batch_sampler, spec.held)):
        assert sampler.groups == split.group_ids
        for batch in sampler.batches():
            groups = [split.group_ids[i] for i in batch]
            assert all(groups.count(g) % 2 == 0 for g in groups), groups  # 4 clips per track: whole pairs
    for bad in (
        ["--audio-contrast-weight", "-1"],
        ["--audio-contrast-weight", "nan"],
        [*flags, "--batch-size", "5"],
    ):
        assert train.main(_pretrain_args(data, "independent", tmp_path / "bad", *bad)) == 2
