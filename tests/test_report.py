"""The sweep report's reading of Table 6 (issue 16's goal), on hand-made cells."""

from music_clip_train.report import goal_summary


def _runs(table: dict[str, list[float]], sizes: list[int]) -> list[dict]:
    return [
        {"objective": o, "n_requested": n, "seed": s, "test": {"macro_f1": f + 0.01 * (s - 1)}}
        for o, scores in table.items()
        for n, f in zip(sizes, scores, strict=True)
        for s in (0, 1, 2)
    ]


def test_goal_summary_names_the_best_mean_over_n_and_every_cell_below_the_baseline() -> None:
    sizes = [48, 3200]
    runs = _runs({"none": [0.20, 0.50], "supcon": [0.30, 0.58], "independent": [0.44, 0.49]}, sizes)
    text = goal_summary(runs, ["none", "supcon", "independent"], sizes)
    # IS has the higher mean over N (0.465 vs 0.44) although SCL wins the largest N.
    assert "Best pretrained objective: **IS** (independent)" in text
    assert "IS at N=3200 (0.490 < 0.500)" in text and "SCL at N" not in text
    assert "2.20x at N=48, -0.010 at N=3200" in text
    assert goal_summary(runs, ["none", "supcon"], [48, 160]) == ""  # N=160 has no cells: no reading
