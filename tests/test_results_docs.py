"""README and docs agree with docs/results/ (scripts/render_results.py), and the README is a guide, not a history."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "render_results.py"
HISTORY = re.compile(r"issue [0-9]+|this session|[0-9]{4}-[0-9]{2}-[0-9]{2}|environment restart", re.I)
COMMIT_HASH = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")


def _load_renderer():
    spec = importlib.util.spec_from_file_location("render_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _load_renderer()


def _cell(objective: str, n: int, seed: int, macro_f1: float) -> dict:
    """A cell in the sweep's results.json format (the keys the report reads, as the loop writes them)."""
    return {
        "objective": objective,
        "n_requested": n,
        "n_used": n,
        "seed": seed,
        "wall_seconds": 1.0,
        "test": {"macro_f1": macro_f1, "accuracy": macro_f1, "num_examples": 864},
    }


def _write_cells(results: Path, profile: str, cells: list[dict]) -> None:
    for cell in cells:
        path = (
            results
            / "table6"
            / profile
            / cell["objective"]
            / f"n{cell['n_requested']}-seed{cell['seed']}.json"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cell))


@pytest.fixture()
def checkout(tmp_path: Path) -> Path:
    """A copy of the committed results with a README holding the full Table 6 block and its reading."""
    shutil.copytree(ROOT / "docs" / "results", tmp_path / "docs" / "results")
    (tmp_path / "README.md").write_text(
        "<!-- results:table6-full source -->\n<!-- /results:table6-full -->\n\n"
        "Reading: <!-- results:table6-full-reading --><!-- /results:table6-full-reading -->\n"
        "Seeds: <!-- results:table6-full-seeds --><!-- /results:table6-full-seeds -->\n"
    )
    assert render.main(["--root", str(tmp_path)]) == 0
    return tmp_path


def test_readme_and_docs_match_the_committed_result_files(capsys):
    assert render.main(["--check"]) == 0, capsys.readouterr().out


def test_every_block_in_readme_and_docs_names_a_renderer_and_every_table6_block_is_used():
    names = {m["name"] for path in render.documents(ROOT) for m in render.BLOCK.finditer(path.read_text())}
    assert names <= set(render.BLOCKS)
    assert {"table6-full", "table6-thesis", "table6-quick", "table6-uncapped", "benchmarks"} <= names


def test_check_exits_nonzero_with_a_diff_when_a_result_value_changes(checkout: Path):
    transcribed = checkout / "docs" / "results" / "table6" / "full-transcribed.json"
    data = json.loads(transcribed.read_text())
    data["mean_std"]["independent"][0] = [0.77, 0.01]
    transcribed.write_text(json.dumps(data))
    check = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--root", str(checkout)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert check.returncode == 1
    assert "+| IS | 0.77 ± 0.01 |" in check.stdout and "-| IS | 0.31 ± 0.03 |" in check.stdout
    assert render.main(["--root", str(checkout)]) == 0
    assert "| IS | 0.77 ± 0.01 |" in (checkout / "README.md").read_text()


def test_cell_files_replace_the_transcribed_table_through_the_reports_mean_and_population_std(checkout: Path):
    results = checkout / "docs" / "results"
    cells = [
        _cell(o, n, s, f1)
        for o, f1s in {"none": (0.2, 0.4), "independent": (0.5, 0.7)}.items()
        for n in (48, 160)
        for s, f1 in enumerate(f1s)
    ]
    _write_cells(results, "full", cells)
    render.main(["--root", str(checkout)])
    text = (checkout / "README.md").read_text()
    assert "| Audio Encoder | 0.30 ± 0.10 | 0.30 ± 0.10 |" in text and "| IS | 0.60 ± 0.10 |" in text
    assert "Rendered from the 8 cell files" in text and "transcribed" not in text
    assert "IS against the un-pretrained baseline: 2× at N = 48, +0.3 at N = 160" in text
    assert "at N = 48, seed by seed: Audio Encoder 0.200, 0.400; IS 0.500, 0.700" in text
    _write_cells(results, "full", [_cell("independent", 48, 1, 0.9)])
    render.main(["--root", str(checkout)])
    assert "| IS | 0.70 ± 0.20 | 0.60 ± 0.10 |" in (checkout / "README.md").read_text()


def test_a_profile_without_cell_files_or_transcription_renders_a_note(tmp_path: Path):
    assert render.Profile(tmp_path, "full").table().startswith("*No result files for the full profile")
    assert render.Profile(tmp_path, "full").reading() == ""


def test_a_cell_file_whose_content_disagrees_with_its_path_is_an_error(checkout: Path):
    _write_cells(checkout / "docs" / "results", "full", [_cell("supcon", 48, 0, 0.3)])
    misplaced = checkout / "docs" / "results" / "table6" / "full" / "supcon" / "n160-seed0.json"
    (misplaced.parent / "n48-seed0.json").rename(misplaced)
    with pytest.raises(render.ResultsError, match="its path says"):
        render.main(["--root", str(checkout)])


def test_the_thesis_reference_json_is_the_reports_thesis_table():
    from music_clip_train.report import THESIS_SIZES, THESIS_TABLE6

    data = json.loads((ROOT / "docs" / "results" / "thesis-table6.json").read_text())
    assert tuple(data["sizes"]) == THESIS_SIZES
    assert {k: tuple(v) for k, v in data["macro_f1"].items()} == THESIS_TABLE6


def test_readme_holds_no_history_dates_issue_numbers_or_commit_hashes():
    readme = (ROOT / "README.md").read_text()
    assert HISTORY.findall(readme) == []
    assert COMMIT_HASH.findall(readme) == []


def test_real_music_blocks_render_the_three_rows_the_verdict_and_retrieval(tmp_path: Path):
    results = tmp_path / "docs" / "results"
    f1 = {("renders-only", "none"): 0.3, ("renders-only", "independent"): 0.35}
    f1[("real-and-renders", "independent")] = 0.5
    for (sweep, objective), value in f1.items():
        for n in (12, 24):
            for seed, delta in enumerate((-0.01, 0.01)):
                bump = 0.2 if (sweep, n) == ("renders-only", 24) else 0.0  # baseline too good at N = 24
                cell = _cell(objective, n, seed, value + delta + bump)
                path = results / "real-music" / sweep / objective / f"n{n}-seed{seed}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(cell))
    evaluation = {"retrieval": {"text_to_music": {"recall@1": 0.1, "recall@5": 0.3, "recall@10": 0.5}}}
    (results / "real-music" / "retrieval").mkdir()
    (results / "real-music" / "retrieval" / "renders-only.json").write_text(
        json.dumps({**evaluation, "heldout": {"tracks": 40}})
    )
    (tmp_path / "README.md").write_text(
        "".join(
            f"<!-- results:real-music-{b} -->\n<!-- /results:real-music-{b} -->\n"
            for b in ("fewshot", "verdict", "retrieval")
        )
    )
    assert render.main(["--root", str(tmp_path)]) == 0
    text = (tmp_path / "README.md").read_text()
    assert "| baseline (from scratch) | 0.300 ± 0.010 | 0.500 ± 0.010 |" in text
    assert "| real+renders IS | 0.500 ± 0.010 | 0.500 ± 0.010 |" in text
    assert "| 12 | +0.2: met | 1.67×: met | +0.15: met |" in text
    assert "| 24 | 0: **missed** | – | −0.05: **missed** |" in text
    assert "| renders-only | 0.100 | 0.300 | 0.500 | 40 (0.250) |" in text


def test_probe_verdict_judges_against_the_better_of_both_baselines(tmp_path: Path):
    results = tmp_path / "docs" / "results"
    f1 = {  # (sweep, objective) → macro-F1 at N = 12 and 24
        ("renders-only", "none"): (0.2, 0.4),  # from scratch, finetuned: the better baseline at N = 24
        ("probe-renders-only", "none"): (0.3, 0.2),  # random tower, probed: the better one at N = 12
        ("probe-renders-only", "independent"): (0.3, 0.3),
        ("probe-real-and-renders", "independent"): (0.45, 0.42),
    }
    for (sweep, objective), values in f1.items():
        for n, value in zip((12, 24), values):
            path = results / "real-music" / sweep / objective / f"n{n}-seed0.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(_cell(objective, n, 0, value)))
    (tmp_path / "README.md").write_text(
        "<!-- results:real-music-probe-verdict -->\n<!-- /results:real-music-probe-verdict -->\n"
    )
    assert render.main(["--root", str(tmp_path)]) == 0
    text = (tmp_path / "README.md").read_text()
    assert "| 12 | +0.15: met | 1.50×: met | +0.15: met |" in text
    assert "| 24 | +0.02: **missed** | – | +0.12: met |" in text


def test_ten_package_verdict_reads_its_own_folder_and_its_own_baseline_sweep(tmp_path: Path):
    results = tmp_path / "docs" / "results"
    f1 = {  # (held-out folder, sweep, objective) → macro-F1 at N = 40
        ("real-music-ten", "baseline", "none"): 0.1,
        ("real-music-ten", "probe-renders-only", "none"): 0.2,
        ("real-music-ten", "probe-renders-only", "independent"): 0.25,
        ("real-music-ten", "probe-real-and-renders", "independent"): 0.32,
        ("real-music", "probe-real-and-renders", "independent"): 0.9,  # the four-package set: not read
        ("real-music-ten-tracks", "baseline", "none"): 0.05,  # N counting tracks: its own table
    }
    for (held_out, sweep, objective), value in f1.items():
        path = results / held_out / sweep / objective / "n40-seed0.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_cell(objective, 40, 0, value)))
    (tmp_path / "README.md").write_text(
        "<!-- results:real-music-ten-probe-verdict -->\n<!-- /results:real-music-ten-probe-verdict -->\n"
        "<!-- results:real-music-ten-fewshot -->\n<!-- /results:real-music-ten-fewshot -->\n"
        "<!-- results:real-music-ten-tracks-fewshot source -->\n<!-- /results:real-music-ten-tracks-fewshot -->\n"
    )
    assert render.main(["--root", str(tmp_path)]) == 0
    text = (tmp_path / "README.md").read_text()
    assert "| 40 | +0.12: met | 1.60×: met | +0.07: met |" in text
    assert "| baseline (from scratch) | 0.100 ± 0.000 |" in text and "0.900" not in text
    ten, tracks = text.split("<!-- results:real-music-ten-tracks-fewshot source -->")
    assert "0.050" not in ten
    assert "| baseline (from scratch) | 0.050 ± 0.000 |" in tracks and "N = labelled tracks" in tracks


def test_a_pooled_row_averages_every_pretraining_seed_sweep(tmp_path: Path):
    results = tmp_path / "docs" / "results" / "real-music-ten"
    f1 = {"baseline": 0.1, "probe-real-and-renders": 0.2, "probe-real-and-renders-ps1": 0.3}
    f1 |= {"probe-real-and-renders-ps2": 0.4, "probe-real-and-renders-ps3": 0.5}
    for sweep, value in f1.items():
        objective = "none" if sweep == "baseline" else "independent"
        path = results / sweep / objective / "n40-seed0.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_cell(objective, 40, 0, value)))
    (tmp_path / "README.md").write_text(
        "<!-- results:real-music-ten-fewshot -->\n<!-- /results:real-music-ten-fewshot -->\n"
    )
    assert render.main(["--root", str(tmp_path)]) == 0
    assert (
        "real+renders IS, pretraining seeds 0-4 pooled" not in (tmp_path / "README.md").read_text()
    )  # ps4 missing
    path = results / "probe-real-and-renders-ps4" / "independent" / "n40-seed0.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(_cell("independent", 40, 0, 0.7)))
    assert render.main(["--root", str(tmp_path)]) == 0
    assert (
        "| real+renders IS, pretraining seeds 0-4 pooled, probe | 0.420 ± 0.172 |"
        in (tmp_path / "README.md").read_text()
    )
