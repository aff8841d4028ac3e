"""Which criterion did best (`training.criteria_summary.best_criterion`): the highest mean gain over
the control, said to be best only when its interval against every other criterion lies above 0."""

from __future__ import annotations

from orthocli.training.criteria_summary import best_criterion
from orthocli.training.stats import paired

ACC = {  # test accuracy per seed of each arm
    "baseline": [0.70, 0.71, 0.69, 0.70],
    "repr": [0.72, 0.73, 0.71, 0.72],
    "random": [0.71, 0.715, 0.70, 0.71],
    "l1": [0.75, 0.77, 0.74, 0.76],
}


def compare(results, first, second):
    return {"test_accuracy": paired(results[first], results[second]).to_dict()}


def test_a_criterion_above_every_other_beyond_noise_is_named_best():
    doc = best_criterion(ACC, ["random", "l1"], compare, "test_accuracy")
    assert doc["best"] == "l1" and doc["beyond_noise"]
    assert set(doc["best_vs"]) == {"orthogonality", "random"}
    assert doc["verdict"].startswith("Of the criteria, l1 did best on this data (+5.50 [")
    assert doc["verdict"].endswith("above every other beyond noise.")


def test_criteria_within_noise_of_the_highest_are_named():
    acc = {**ACC, "l1": [0.73, 0.72, 0.715, 0.725]}  # as good as the method, seed by seed up and down
    doc = best_criterion(acc, ["random", "l1"], compare, "test_accuracy")
    assert doc["best"] in ("orthogonality", "l1") and not doc["beyond_noise"]
    other = "l1" if doc["best"] == "orthogonality" else "orthogonality"
    assert doc["verdict"].startswith(f"Of the criteria, none differs beyond noise from {doc['best']}, the highest")
    assert f"minus {other} " in doc["verdict"]


def test_one_seed_gives_no_interval_and_says_so():
    one = {k: v[:1] for k, v in ACC.items()}
    doc = best_criterion(one, ["random", "l1"], compare, "test_accuracy")
    assert doc["best"] == "l1" and not doc["beyond_noise"] and "one seed cannot say beyond noise" in doc["verdict"]
