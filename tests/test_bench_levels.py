"""``paraspinal bench levels``: the scoring of a stack's levels against the truth and the
summary per kind of stack."""

import pytest

from napari_paraspinal.bench_levels import score_levels, summary


def test_score_levels_counts_right_unknown_and_wrong() -> None:
    truth = ["S1", "S1", "L5-S1", "L5", "L4-L5", "L4"]
    found = ["sacrum", "S1", "L5-S1", "unknown", "L5-S1", "L4"]  # counting names S1 sacrum
    assert score_levels(found, truth) == {"correct": 4, "unknown": 1, "wrong": 1,
                                          "miscounted": 1}  # L5-S1 for L4-L5: a disc off
    edge = ["S1", "L5-S1", "L5-S1", "L5-S1", "L4-L5", "L4"]  # a body slice given to the disc
    assert score_levels(edge, truth) == {"correct": 4, "unknown": 0, "wrong": 2,
                                         "miscounted": 0}
    with pytest.raises(ValueError):
        score_levels(found[:-1], truth)


def test_summary_gives_shares_per_kind_of_stack() -> None:
    rows = [{"reaches_sacrum": True, "slices": 10, "model_correct": 6, "model_unknown": 3,
             "model_wrong": 1, "model_miscounted": 1, "true_discs_correct": 10,
             "true_discs_unknown": 0, "true_discs_wrong": 0, "true_discs_miscounted": 0},
            {"reaches_sacrum": True, "slices": 30, "model_correct": 0, "model_unknown": 30,
             "model_wrong": 0, "model_miscounted": 0, "true_discs_correct": 29,
             "true_discs_unknown": 0, "true_discs_wrong": 1, "true_discs_miscounted": 0},
            {"reaches_sacrum": False, "slices": 5, "model_correct": 0, "model_unknown": 5,
             "model_wrong": 0, "model_miscounted": 0, "true_discs_correct": 0,
             "true_discs_unknown": 5, "true_discs_wrong": 0, "true_discs_miscounted": 0}]
    reach, short = summary(rows)
    assert (reach["n"], reach["slices"]) == (2, 40)
    assert reach["model_correct_pct"] == 15.0 and reach["model_wrong_pct"] == 2.5
    assert reach["true_discs_correct_pct"] == 97.5
    assert short["model_unknown_pct"] == 100.0 and short["stacks"] == "not reaching it"
