"""`orthocli train --baseline --control random` through the real app: the random-drop arm drops the
method's counts per layer, cycle by cycle, other filters, the same ones again from its seed; it
resumes bit-identically; --seeds N gives three paired comparisons and a verdict; bad combinations
are one-line usage errors with nothing written. And the statement before training: is there
anything to remove?"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from train_helpers import TINY, orthogonal, rewrite_convs

import orthocli.checkpoints.checkpoint as ckpt_io
from orthocli.training.experiment import Experiment

pytestmark = pytest.mark.usefixtures("one_thread")

# Two cycles of the default (adaptive) rule: 8-filter layers drop in cycle 1 after 2 epochs here.
TWO_CYCLES = [*TINY, "--width", "8", "--s1", "2", "--cycles", "2", "--max-epochs", "7"]
SUMMARY_KEYS = {"val_accuracy", "test_accuracy", "epochs", "best_epoch", "stopped_early", "cycles", "output"}


def weights(path) -> dict[str, torch.Tensor]:
    return ckpt_io.load(path).state_dict


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_random_arm_drops_the_methods_counts_other_filters_reproducibly(run_cli, tmp_path, drops_seen):
    out = tmp_path / "m.pt"
    res = run_cli("train", *TWO_CYCLES, "--baseline", "--control", "random", "-o", out, "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)

    method = [c["dropped"] for c in doc["cycles"]]
    assert sum(sum(c.values()) for c in method) > 0  # the method dropped something
    assert set(doc["random"]) >= SUMMARY_KEYS and doc["random"]["output"] == str(tmp_path / "m.random.pt")
    assert [c["dropped"] for c in doc["random"]["cycles"]] == method  # the same counts, cycle by cycle
    ranked = [d for r, d in drops_seen if r == "orthogonality"]
    randomly = [d for r, d in drops_seen if r == "random"]
    assert [{n: len(i) for n, i in d.items()} for d in randomly] == [{n: len(i) for n, i in d.items()} for d in ranked]
    assert randomly != ranked  # other filters
    assert doc["baseline"]["cycles"][0]["dropped"] == {}

    saved = ckpt_io.load(tmp_path / "m.random.pt").extras
    assert (
        saved["role"] == "random" and saved["config"]["ranking"] == "random" and saved["config"]["control"] == "random"
    )
    assert ckpt_io.load(out).extras["config"]["ranking"] == "orthogonality"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.baseline.pt", "m.pt", "m.random.pt"]  # no state left
    assert "Random drops: training, writing" in res.stderr and "random cycle 1:" in res.stderr

    again = run_cli("train", *TWO_CYCLES, "--baseline", "--control", "random", "-o", tmp_path / "again.pt")
    assert again.exit_code == 0, again.stderr
    assert same(weights(tmp_path / "again.random.pt"), weights(tmp_path / "m.random.pt"))  # from its seed
    assert [d for r, d in drops_seen if r == "random"][len(randomly) :] == randomly


def test_the_random_arm_resumes_bit_identically(run_cli, tmp_path, monkeypatch):
    args = [*TWO_CYCLES, "--baseline", "--control", "random", "--deterministic", "--state-every", "0"]
    full = run_cli("train", *args, "-o", tmp_path / "full.pt", "--json")
    assert full.exit_code == 0, full.stderr

    real = Experiment.on_event

    def interrupt(self, role, event, arch):
        real(self, role, event, arch)
        if role == "random" and event["kind"] == "epoch" and event["epoch"] == 3:  # inside cycle 1's sub-network
            raise KeyboardInterrupt

    monkeypatch.setattr(Experiment, "on_event", interrupt)
    out = tmp_path / "run.pt"
    first = run_cli("train", *args, "-o", out)
    assert first.exit_code == 130 and f"orthocli train -o {out} --resume" in first.stderr
    assert (tmp_path / "run.random.pt.state").exists() and not (tmp_path / "run.random.pt").exists()
    monkeypatch.setattr(Experiment, "on_event", real)
    wrong = run_cli("train", "-o", tmp_path / "run.random.pt", "--resume")
    assert wrong.exit_code == 2 and "give -o the method run's output, not the random arm's" in wrong.stderr

    resumed = run_cli("train", "-o", out, "--resume", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    for tag in ("", ".baseline", ".random"):
        assert same(weights(tmp_path / f"run{tag}.pt"), weights(tmp_path / f"full{tag}.pt")), tag
    a, b = json.loads(full.stdout), json.loads(resumed.stdout)
    assert [c["dropped"] for c in b["random"]["cycles"]] == [c["dropped"] for c in a["random"]["cycles"]]
    assert not list(tmp_path.glob("*.state"))


def test_seeds_give_three_paired_comparisons_and_a_verdict(run_cli, tmp_path):
    out = tmp_path / "s.pt"
    args = ["train", *TWO_CYCLES, "--baseline", "--control", "random", "--seeds", "3", "-o", out, "--json"]
    res = run_cli(*args)
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert "Seed 1 (2 of 3): RePr, control, then random drops, writing" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"s.seed{k}{tag}.pt" for k in range(3) for tag in ("", ".baseline", ".random")
    )
    acc = {arm: [s[arm]["test_accuracy"] for s in doc["seeds"]] for arm in ("repr", "baseline", "random")}
    summary = doc["summary"]
    for key, a, b in (
        ("repr_vs_control", "repr", "baseline"),
        ("random_vs_control", "random", "baseline"),
        ("repr_vs_random", "repr", "random"),
    ):
        p = summary[key]["test_accuracy"]
        diffs = [x - y for x, y in zip(acc[a], acc[b])]
        mean, half = float(np.mean(diffs)), 4.303 * float(np.std(diffs, ddof=1)) / 3**0.5  # t(0.975, 2 df)
        assert p["n"] == 3 and p["wins"] == sum(d > 0 for d in diffs), key
        assert p["mean_difference"] == pytest.approx(mean) and p["method"]["mean"] == pytest.approx(np.mean(acc[a]))
        assert (p["ci_low"], p["ci_high"]) == pytest.approx((mean - half, mean + half)), key
        assert "val_accuracy" in summary[key]
    assert summary["test_accuracy"] == summary["repr_vs_control"]["test_accuracy"]  # the keys from before stay
    ranking = summary["repr_vs_random"]["test_accuracy"]
    assert f"{100 * ranking['mean_difference']:+.2f} [{100 * ranking['ci_low']:+.2f}," in summary["verdict"]

    human = run_cli(*args[:-1], "--resume")  # every seed finished: read back, the same document
    assert human.exit_code == 0, human.stderr
    for text in ("random - control", "RePr - random", summary["verdict"][:40]):
        assert text in human.stdout.replace("\n", " ") or text in human.stdout
    again = json.loads(run_cli(*args, "--resume").stdout)
    assert again["seeds"] == doc["seeds"] and again["summary"] == summary


@pytest.mark.parametrize(
    "args,message",
    [
        (["--control", "random"], "--control random trains a third arm beside the plain control: add --baseline"),
        (["--control", "random", "--seeds", "2"], "--seeds compares the method with its control seed by seed"),
        (["--control", "random", "--baseline", "--cycles", "0"], "--control random compares the method's drops"),
    ],
)
def test_bad_combinations_are_one_line_usage_errors(run_cli, tmp_path, args, message):
    res = run_cli("train", *TINY, *args, "-o", tmp_path / "m.pt")
    assert res.exit_code == 2, res.stderr
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and message in res.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("control", "says"),
    [
        ("norm", "--control takes criteria separated by commas, each one of random, least, l1, bn-scale, taylor,"),
        ("random,orthogonality", "got 'random,orthogonality'"),  # the method's own ranking is no control
        ("l1,random,l1", "--control names l1 twice"),
    ],
)
def test_an_unknown_or_repeated_control_is_a_one_line_usage_error(run_cli, tmp_path, control, says):
    res = run_cli("train", *TINY, "--baseline", "--control", control, "-o", tmp_path / "m.pt")
    assert res.exit_code == 2 and says in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_before_training_each_candidate_layer_is_read_against_chance(run_cli, tmp_path):
    res = run_cli("train", *TINY, "-o", tmp_path / "m.pt", "--json")
    assert res.exit_code == 0, res.stderr
    red = json.loads(res.stdout)["redundancy"]
    names = [layer["name"] for layer in red["start"]["layers"]]
    assert names == ["features.conv2", "features.conv3"]
    for layer in red["start"]["layers"]:
        line = f"  {layer['name']}: mean {layer['mean']:.3f}, random filters {layer['chance']:.3f}"
        assert line in res.stderr and layer["ratio"] == pytest.approx(layer["mean"] / layer["chance"])
    assert "a new model starts at random filters, the first drop reads them after 1 epoch:" in res.stderr
    assert red["first_drop"]["epoch"] == 1 and "Redundancy at cycle 1's drop (after epoch 1):" in res.stderr
    stderr = res.stderr
    assert (
        stderr.index("Redundancy before training")
        < stderr.index("Redundancy at cycle 1's drop")
        < stderr.index("RePr cycle 1:")
    )


def test_when_no_layer_is_above_chance_train_says_so_before_the_first_cycle(run_cli, cli_json, tmp_path):
    small = ["--data", "digits", "--max-samples", "120", "--width", "8", "--batch-size", "32"]
    start = tmp_path / "start.pt"
    cli_json("train", *small, "--cycles", "0", "--max-epochs", "1", "-o", start)
    rewrite_convs(start, start, orthogonal)
    res = run_cli("train", start, *small, "--s1", "0", "--s2", "1", "--cycles", "1", "-o", tmp_path / "a.pt", "--json")
    assert res.exit_code == 0, res.stderr
    said = "No candidate layer is redundant enough: the default rule drops nothing from these weights"
    assert said in res.stderr and "Give --ratio to drop anyway." in res.stderr
    assert res.stderr.index(said) < res.stderr.index("RePr cycle 1:")
    red = json.loads(res.stdout)["redundancy"]
    assert red["start"]["nothing_to_drop"] and red["first_drop"] == {"epoch": 0, **red["start"]}
    assert all(not layer["above_chance"] and layer["drops"] == 0 for layer in red["start"]["layers"])
    ratio = run_cli(
        "train", start, *small, "--s1", "0", "--s2", "1", "--cycles", "1", "--ratio", "0.25", "-o", tmp_path / "b.pt"
    )
    assert ratio.exit_code == 0 and "No candidate layer is redundant enough" not in ratio.stderr


def test_plot_draws_each_candidate_layer_against_chance_for_every_arm(run_cli, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.image

    import orthocli.scoring.plot

    drawn = {}
    real = orthocli.scoring.plot.plot_history

    def spy(path, histories, chance=None):
        drawn.update(histories=histories, chance=chance)
        real(path, histories, chance=chance)

    monkeypatch.setattr(orthocli.scoring.plot, "plot_history", spy)
    png = tmp_path / "p.png"
    res = run_cli("train", *TINY, "--baseline", "--control", "random", "-o", tmp_path / "m.pt", "--plot", png, "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert set(drawn["histories"]) == {"repr", "baseline", "random"}
    assert drawn["chance"] == {layer["name"]: layer["chance"] for layer in doc["redundancy"]["start"]["layers"]}
    for history in drawn["histories"].values():
        assert [set(e["layer_means"]) for e in history] == [set(drawn["chance"])] * 3
    assert matplotlib.image.imread(png).shape[:2] == (800, 800)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.baseline.pt", "m.pt", "m.random.pt", "p.png"]


def test_a_diverged_method_run_leaves_the_random_arm_its_finished_cycles_counts(run_cli, tmp_path):
    """Re-introduced filters 1e30 too long overflow the loss in the epoch after: the method diverges.
    After its last cycle the random arm has every count and trains (and diverges the same way);
    before it, the random arm has nothing to match and is not trained. The control is kept."""
    args = [*TINY, "--reinit-scale", "1e30", "--baseline", "--control", "random", "--json"]
    after = run_cli("train", *args, "-o", tmp_path / "a.pt")
    assert after.exit_code == 8, after.stderr
    doc = json.loads(after.stdout)
    assert doc["diverged"]["epoch"] == 3 and doc["random"]["diverged"]["epoch"] == 3
    assert after.stderr.splitlines()[-1].startswith("Error: the RePr run and the random-drop arm diverged")

    before = run_cli("train", *args, "--cycles", "2", "--max-epochs", "5", "-o", tmp_path / "b.pt")
    assert before.exit_code == 8, before.stderr
    doc = json.loads(before.stdout)
    assert doc["random"] == {
        "skipped": "the RePr run diverged before its last cycle: no drop counts to match",
        "output": None,
    }
    assert "Random drops: not trained (the RePr run diverged before its last cycle" in before.stderr
    assert 0 <= doc["baseline"]["test_accuracy"] <= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.baseline.pt", "b.baseline.pt"]
