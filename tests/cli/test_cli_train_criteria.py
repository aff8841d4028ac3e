"""`orthocli train --baseline --control random,l1,taylor` through the real app: one matched arm per
criterion, each dropping the method's counts per layer and cycle, chosen by its own ranking; with
--seeds N each arm against the control and the method against each arm, with 95% intervals, and
which criterion did best; a data-dependent arm resumes bit-identically."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from train_helpers import TINY

import orthocli.checkpoints.checkpoint as ckpt_io
from orthocli.training.experiment import Experiment

pytestmark = pytest.mark.usefixtures("one_thread")

TWO_CYCLES = [*TINY, "--width", "8", "--s1", "2", "--cycles", "2", "--max-epochs", "7"]
ARMS = ("random", "l1", "taylor")


def same(a, b) -> bool:
    a, b = ckpt_io.load(a).state_dict, ckpt_io.load(b).state_dict
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_several_matched_arms_over_seeds_compare_every_criterion(run_cli, tmp_path, drops_seen):
    out = tmp_path / "s.pt"
    args = ["train", *TWO_CYCLES, "--baseline", "--control", ",".join(ARMS), "--seeds", "2", "-o", out, "--json"]
    res = run_cli(*args)
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert "Seed 1 (2 of 2): RePr, control, then random, l1, taylor drops, writing" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"s.seed{k}{tag}.pt" for k in range(2) for tag in ("", ".baseline", *(f".{a}" for a in ARMS))
    )
    for row in doc["seeds"]:  # every arm dropped the method's counts, cycle by cycle
        method = [c["dropped"] for c in row["repr"]["cycles"]]
        assert sum(sum(c.values()) for c in method) > 0
        for arm in ARMS:
            assert [c["dropped"] for c in row[arm]["cycles"]] == method, arm
            saved = ckpt_io.load(row[arm]["output"]).extras
            assert saved["role"] == arm and saved["config"]["ranking"] == arm
    # the choices: per seed, the method's cycles then each arm's, the same counts, other filters
    per_seed = len(drops_seen) // 2
    for seed_choices in (drops_seen[:per_seed], drops_seen[per_seed:]):
        by = {r: [d for rr, d in seed_choices if rr == r] for r in ("orthogonality", *ARMS)}
        counts = {r: [{n: len(i) for n, i in d.items()} for d in ds] for r, ds in by.items()}
        assert all(c == counts["orthogonality"] for c in counts.values())
        assert by["l1"] != by["orthogonality"] or by["taylor"] != by["orthogonality"]

    summary = doc["summary"]
    acc = {arm: [s[arm]["test_accuracy"] for s in doc["seeds"]] for arm in ("repr", "baseline", *ARMS)}
    for arm in ARMS:
        for key, a, b in ((f"{arm}_vs_control", arm, "baseline"), (f"repr_vs_{arm}", "repr", arm)):
            p = summary[key]["test_accuracy"]
            diffs = [x - y for x, y in zip(acc[a], acc[b])]
            mean, half = float(np.mean(diffs)), 12.706 * float(np.std(diffs, ddof=1)) / 2**0.5  # t(0.975, 1 df)
            assert p["n"] == 2 and p["mean_difference"] == pytest.approx(mean), key
            assert (p["ci_low"], p["ci_high"]) == pytest.approx((mean - half, mean + half)), key
    assert {"random_vs_control", "repr_vs_random", "repr_vs_control", "test_accuracy"} <= set(summary)  # as before
    crit = summary["criteria"]
    gains = {"orthogonality": np.mean(np.subtract(acc["repr"], acc["baseline"]))}
    gains.update({a: np.mean(np.subtract(acc[a], acc["baseline"])) for a in ARMS})
    assert crit["best"] == max(gains, key=gains.get)
    assert set(crit["vs_control"]) == set(gains) and set(crit["best_vs"]) == set(gains) - {crit["best"]}
    assert crit["verdict"] in summary["verdict"] and "Of the criteria" in crit["verdict"]
    assert crit["beyond_noise"] == all(d["ci_low"] > 0 for d in crit["best_vs"].values())

    human = run_cli(*args[:-1], "--resume")  # every seed finished: read back, the table and the verdict
    assert human.exit_code == 0, human.stderr
    flat = " ".join(human.stdout.split())
    for text in ("taylor - control", "RePr - l1", "Of the criteria"):
        assert text in flat, text


def test_a_taylor_arm_resumes_bit_identically(run_cli, tmp_path, monkeypatch):
    args = [*TWO_CYCLES, "--baseline", "--control", "taylor", "--deterministic", "--state-every", "0"]
    full = run_cli("train", *args, "-o", tmp_path / "full.pt", "--json")
    assert full.exit_code == 0, full.stderr
    real = Experiment.on_event

    def interrupt(self, role, event, arch):
        real(self, role, event, arch)
        if role == "taylor" and event["kind"] == "epoch" and event["epoch"] == 1:  # before its first gathering epoch
            raise KeyboardInterrupt

    monkeypatch.setattr(Experiment, "on_event", interrupt)
    out = tmp_path / "run.pt"
    assert run_cli("train", *args, "-o", out).exit_code == 130
    assert (tmp_path / "run.taylor.pt.state").exists()
    monkeypatch.setattr(Experiment, "on_event", real)
    resumed = run_cli("train", "-o", out, "--resume", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    for tag in ("", ".baseline", ".taylor"):
        assert same(tmp_path / f"run{tag}.pt", tmp_path / f"full{tag}.pt"), tag
    a, b = json.loads(full.stdout), json.loads(resumed.stdout)
    assert [c["dropped"] for c in b["taylor"]["cycles"]] == [c["dropped"] for c in a["cycles"]]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["--control", "random,bn-scale"],
            "the bn-scale ranking reads the scale of the BatchNorm after each conv, and",
        ),
        (["--control", "taylor", "--s1", "0"], "the taylor ranking reads statistics gathered during the last standard"),
    ],
)
def test_an_arm_whose_criterion_cannot_apply_is_refused_before_training(run_cli, tmp_path, args, says):
    res = run_cli("train", *TINY, "--baseline", *args, "-o", tmp_path / "m.pt")
    assert res.exit_code == 2 and says in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and "training, writing" not in res.stderr
    assert list(tmp_path.iterdir()) == []
