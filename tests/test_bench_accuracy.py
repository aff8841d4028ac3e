"""benchmarks/bench_accuracy.py: the figures docs/results.md quotes come from its table, its shared
controls and its --reuse. These tests feed it made-up runs (no training) and check the arithmetic
against an independent computation."""

from __future__ import annotations

import importlib.util
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_accuracy.py"
T_975 = {2: 4.302653, 3: 3.182446}  # Student's t, 97.5% quantile, by degrees of freedom (tables)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_accuracy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(bench, label: str, seed: int, baseline: bool, accuracy: float | None, **extra) -> dict:
    job = {"data": "mnist1d", "max_samples": None, "arch": "convnet", "base": {}}
    out = {"label": label, "seed": seed, "baseline": baseline, **bench.run_key_fields(job), "epochs": 40, **extra}
    if accuracy is not None:
        out["test_accuracy"] = accuracy
    return out


def expected_cell(method: list[float], control: list[float]) -> str:
    diffs = [100 * (m - c) for m, c in zip(method, control)]
    mean = statistics.mean(diffs)
    half = T_975[len(diffs) - 1] * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}]"


def test_table_reports_the_paired_gain_its_interval_and_wins(bench):
    configs = bench.grid("ratio")
    label, overrides = configs[0]
    control_label = f"control {bench.control_key(overrides)}"
    control, method = [0.90, 0.91, 0.92], [0.91, 0.905, 0.935]  # seed 1 loses
    runs = [run(bench, control_label, s, True, a) for s, a in enumerate(control)]
    runs += [run(bench, label, s, False, a) for s, a in enumerate(method)]

    line = bench.table(runs, configs).splitlines()[-1]

    assert expected_cell(method, control) in line
    assert "| 2/3 |" in line
    assert f"{100 * statistics.mean(method):.2f} ± {100 * statistics.stdev(method):.2f}" in line
    assert line.endswith("| 0 |")  # nothing diverged


def test_a_diverged_run_is_named_and_left_out_of_the_statistics(bench):
    configs = bench.grid("ratio")
    label, overrides = configs[0]
    control_label = f"control {bench.control_key(overrides)}"
    control, method = [0.90, 0.91, 0.92, 0.93], [0.91, 0.915, 0.925, None]
    runs = [run(bench, control_label, s, True, a) for s, a in enumerate(control)]
    runs += [run(bench, label, s, False, a) for s, a in enumerate(method[:3])]
    runs.append(run(bench, label, 3, False, None, diverged="loss is nan", epochs=23))

    line = bench.table(runs, configs).splitlines()[-1]

    assert expected_cell(method[:3], control[:3]) in line  # seed 3 is left out of both arms
    assert "| 3/3 |" in line
    assert "RePr seed 3 epoch 23" in line


def test_configurations_differing_only_in_what_is_dropped_share_a_control(bench):
    drop_rules = [{"ratio": 0.1, "reinit_fan_out": "zero"}, {"threshold": 0.079}, {"ratio": None}]
    assert len({bench.control_key(o) for o in drop_rules}) == 1
    # another schedule is another budget: its control trains with it
    assert bench.control_key({"ratio": 0.3, "s2": 5}) != bench.control_key({"ratio": 0.3})


def test_every_configuration_names_its_drop_rule(bench):
    # what a configuration leaves out is train's default, and the default rule has moved before:
    # a grid that named no rule would change meaning with it
    for name in bench.GRIDS:
        for label, overrides in bench.grid(name):
            assert "ratio" in overrides or "threshold" in overrides, (name, label)


def test_every_grid_label_is_unique_and_unknown_grids_are_listed(bench):
    for name in bench.GRIDS:
        labels = [label for label, _ in bench.grid(name)]
        assert len(labels) == len(set(labels)), name
    with pytest.raises(SystemExit, match="unknown grid 'nope'.*candidates"):
        bench.grid("nope")


def test_reuse_takes_earlier_runs_instead_of_training_again(bench, tmp_path):
    label, overrides = bench.grid("ratio")[0]
    control_label = f"control {bench.control_key(overrides)}"
    control, method = [0.90, 0.91, 0.93], [0.92, 0.91, 0.94]
    earlier = tmp_path / "earlier.jsonl"
    lines = [run(bench, control_label, s, True, a) for s, a in enumerate(control)]
    lines += [run(bench, label, s, False, a) for s, a in enumerate(method)]
    earlier.write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = tmp_path / "out.jsonl"

    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--grid", "ratio", "--seeds", "3", "--jobs", "1"]
        + ["--reuse", str(earlier), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    assert "0 runs in" in done.stdout and "(6 more reused from --reuse)" in done.stdout
    assert expected_cell(method, control) in done.stdout
    assert sorted(json.loads(x)["seed"] for x in out.read_text().splitlines()) == [0, 0, 1, 1, 2, 2]


def test_a_configuration_may_change_the_architecture_and_the_validation_split(bench, monkeypatch):
    """The `setup` grid's kernel and validation-split variants reach the model and the data (one
    short real run): with no validation part there is no early stopping and no validation figure."""
    import orthocli.network.models

    built = []
    real = orthocli.network.models.build_model
    monkeypatch.setattr(orthocli.network.models, "build_model", lambda arch: built.append(arch) or real(arch))
    base = {"width": 8, "s1": 1, "s2": 1, "cycles": 1, "max_epochs": 4, "min_steps": 0, "patience": 1}
    job = {"data": "digits", "max_samples": 150, "arch": "convnet", "base": base, "label": "x", "seed": 0}

    run = bench.run_one({**job, "baseline": False, "overrides": {"ratio": 0.25, "val_fraction": 0.0, "kernel": 5}})

    assert built[0]["args"]["kernel"] == 5 and built[0]["args"]["width"] == 8
    assert run["val_accuracy"] is None and run["epochs"] == 4  # patience 1 cannot stop a run without validation
    assert run["dropped"] == [4]  # 25% of conv2's and conv3's 8 filters
    control = bench.run_one({**job, "baseline": True, "overrides": {}})
    assert control["val_accuracy"] is not None and built[1]["args"].get("kernel", 3) == 3


def test_a_ranked_run_drops_the_same_count_chosen_another_way(bench):
    """`--grid ranking` asks whether the orthogonality ranking matters: the product's own ranking
    option (`ReprConfig.ranking`), the same count per layer, other filters; an unknown ranking is
    refused before any training."""
    from orthocli.errors import UsageError

    base = {"width": 8, "s1": 1, "s2": 1, "cycles": 2, "max_epochs": 5, "min_steps": 0, "ratio": 0.25}
    job = {"data": "digits", "max_samples": 150, "arch": "convnet", "base": base, "label": "x", "seed": 0}
    rankings = ("orthogonality", "random", "least")

    runs = {r: bench.run_one({**job, "baseline": False, "overrides": {"ranking": r}}) for r in rankings}

    assert {r: run["dropped"] for r, run in runs.items()} == {r: [4, 4] for r in rankings}
    ortho = runs["orthogonality"]["test_accuracy"]
    assert runs["random"]["test_accuracy"] != ortho and runs["least"]["test_accuracy"] != ortho  # other filters
    with pytest.raises(
        UsageError,
        match="ranking must be one of orthogonality, random, least, l1, bn-scale, taylor, activation, got 'norm'",
    ):
        bench.run_one({**job, "baseline": False, "overrides": {"ranking": "norm"}})


def test_a_matched_random_run_drops_the_method_runs_counts(bench):
    """`--grid ranking-matched`: the random-filter job first trains the method run (the same as the
    method's own job) and drops its counts, cycle by cycle: what `train --control random` does."""
    base = {"width": 8, "s1": 2, "s2": 1, "cycles": 2, "max_epochs": 6, "min_steps": 0}
    job = {"data": "digits", "max_samples": 150, "arch": "convnet", "base": base, "seed": 0, "baseline": False}
    (method_label, method), (random_label, matched) = bench.grid("ranking-matched")

    ranked = bench.run_one({**job, "label": method_label, "overrides": method})
    control = bench.run_one({**job, "label": random_label, "overrides": matched})

    assert sum(ranked["dropped"]) > 0 and control["dropped_layers"] == ranked["dropped_layers"]
    assert control["method_test_accuracy"] == ranked["test_accuracy"]  # the same method run, in-process
    assert control["test_accuracy"] != ranked["test_accuracy"]  # other filters
    assert bench.control_key(matched) == bench.control_key(method)  # one control for both


COMPARE = ROOT / "benchmarks" / "compare_control_arms.py"


def test_the_products_three_arms_are_the_benchmarks_runs_seed_by_seed(tmp_path):
    """benchmarks/compare_control_arms.py on a tiny configuration: `orthocli train --baseline
    --control random --seeds 2` and `bench_accuracy.py --grid ranking-matched` give the same runs."""
    tiny = ["--set", "s1=2", "--set", "s2=1", "--set", "cycles=2", "--set", "max_epochs=6", "--set", "width=8"]
    cmd = [sys.executable, str(COMPARE), "--data", "digits", "--max-samples", "150", "--seeds", "2", "--jobs", "1"]
    done = subprocess.run([*cmd, *tiny, "--work", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith(("| 0 |", "| 1 |"))]
    assert len(rows) == 2 and all(row.endswith("| yes |") for row in rows)
    assert "All runs identical." in done.stdout and "Product's verdict: RePr" in done.stdout
    doc = json.loads((tmp_path / "product.json").read_text())
    assert [sorted(s) for s in doc["seeds"]] == [["baseline", "random", "repr", "seed"]] * 2


def test_a_run_that_differs_is_named(bench):
    spec = importlib.util.spec_from_file_location("compare_control_arms", COMPARE)
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    summary = {"test_accuracy": 0.9, "val_accuracy": 0.8, "cycles": [{"dropped": {"conv2": 1}}]}
    doc = {"seeds": [{"seed": 0, **{arm: dict(summary) for arm in compare.ARMS}}]}
    theirs = {"test_accuracy": 0.9, "val_accuracy": 0.8, "dropped_layers": [{"conv2": 1}]}
    arms = {arm: {0: dict(theirs)} for arm in compare.ARMS}
    assert compare.compare(doc, arms)[1] == 0
    arms["random"][0]["test_accuracy"] = 0.91
    lines, differ = compare.compare(doc, arms)
    assert differ == 1 and lines[-1].endswith("| **no** |") and "90.00 (80.00) / 91.00 (80.00)" in lines[-1]
    arms["random"][0] = {**theirs, "dropped_layers": [{"conv2": 2}]}  # same figures, other counts: not the same run
    assert compare.compare(doc, arms)[1] == 1


def test_best_of_chooses_by_validation_and_pairs_the_chosen_arms_by_seed(tmp_path):
    """benchmarks/best_of.py: the best RePr and the best control are the configurations with the
    highest mean *validation* accuracy (a test-set choice would flatter both), compared on test."""

    def line(label, kernel, seed, baseline, test, val):
        run = {"label": label, "seed": seed, "baseline": baseline, "base": {"kernel": kernel}}
        return json.dumps({**run, "test_accuracy": test, "val_accuracy": val})

    k3, k5 = tmp_path / "k3.jsonl", tmp_path / "k5.jsonl"
    # kernel 3: the control has the best test accuracy but the lower validation accuracy
    k3.write_text("\n".join(line("control {}", 3, s, True, 0.95 + s / 100, 0.90) for s in range(3)))
    lines = [line("control {}", 5, s, True, 0.90 + s / 200, 0.92) for s in range(3)]
    lines += [line("rule A", 5, s, False, 0.93 + s / 100, 0.95) for s in range(3)]
    lines += [line("rule B", 5, s, False, 0.99, 0.94) for s in range(3)]  # best test, not best val
    k5.write_text("\n".join(lines))
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "best_of.py"), str(k3), str(k5)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "| RePr | kernel=5: rule A |" in out
    assert "| control | kernel=5: control |" in out
    diffs = [100 * ((0.93 + s / 100) - (0.90 + s / 200)) for s in range(3)]
    half = T_975[2] * statistics.stdev(diffs) / math.sqrt(3)
    mean = statistics.mean(diffs)
    assert f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}], RePr better 3/3" in out


def test_the_criteria_grid_matches_every_criterion_to_the_method_under_both_rules(bench):
    configs = dict(bench.grid("criteria"))
    for rule in ("excess over chance", "the paper's rule"):
        method = configs[f"{rule}, orthogonality (the method)"]
        assert "ranking" not in method and "counts" not in method
        for name in ("random", "least", "l1", "bn-scale", "taylor", "activation"):
            label = f"{rule}, {name} filters, the method's counts" + (", BatchNorm" if name == "bn-scale" else "")
            arm = configs[label]
            assert arm["ranking"] == name and arm["counts"] == "method"
            assert {k: v for k, v in arm.items() if k not in ("ranking", "counts", "batchnorm")} == method
            # the same drop rule as the method: one control per seed, but bn-scale's BatchNorm network's
            assert (bench.control_key(arm) == bench.control_key(method)) == (name != "bn-scale")
