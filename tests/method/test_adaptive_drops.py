"""The default, adaptive drop rule (no --ratio, no --threshold): each layer drops the share of its
filters by which its mean score exceeds the score of random filters of its shape (at most 30%),
none when it is at or below that chance level."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from train_helpers import near_copies, orthogonal, rewrite_convs

from orthocli.config import ReprConfig
from orthocli.errors import UsageError
from orthocli.method.drops import choose_drops
from orthocli.method.orthogonality import chance_score, orthogonality_scores

SAMPLE = Path(__file__).parents[2] / "sample_models" / "mnist1d_convnet.pt"


def test_chance_score_in_two_dimensions_is_two_over_pi():
    # two random directions in a plane: the angle is uniform, so E|cos| = 2/pi
    assert chance_score(2, 5) == pytest.approx(4 / 5 * 2 / math.pi, rel=1e-12)
    assert chance_score(1, 4) == pytest.approx(3 / 4)  # on a line every pair is parallel


@pytest.mark.parametrize(("fan_in", "filters"), [(3, 32), (96, 32), (288, 16), (1000, 8)])
def test_chance_score_matches_the_scores_of_random_filters(fan_in, filters):
    gen = torch.Generator().manual_seed(0)
    scores = torch.cat([orthogonality_scores(torch.randn(filters, fan_in, 1, generator=gen)) for _ in range(300)])
    assert float(scores.mean()) == pytest.approx(chance_score(fan_in, filters), rel=0.02)


@settings(max_examples=50, deadline=None)
@given(fan_in=st.integers(2, 5000), filters=st.integers(2, 256))
def test_chance_score_falls_with_more_weights_per_filter(fan_in, filters):
    c = chance_score(fan_in, filters)
    assert 0 < c < (filters - 1) / filters
    assert chance_score(fan_in + 1, filters) < c


def adaptive_counts(means, chance, sizes, min_keep=1):
    rule = ReprConfig(min_keep=min_keep)
    scores = [torch.full((n,), m) + torch.linspace(0, 1e-3, n) - 5e-4 for m, n in zip(means, sizes)]
    return [len(d) for d in choose_drops(scores, rule, chance)], scores, rule


def test_each_layer_drops_its_share_above_chance_and_none_below():
    counts, _, _ = adaptive_counts([0.10, 0.079, 0.05, 0.12], [0.08, 0.079, 0.079, 0.079], [32, 32, 32, 20])
    # 1 - 0.08/0.10 = 20% of 32 -> 6; at and below chance -> 0; 1 - 0.079/0.12 = 34% -> capped at 30% of 20 -> 6
    assert counts == [6, 0, 0, 6]


def test_the_most_redundant_filters_go_first():
    counts, scores, rule = adaptive_counts([0.2], [0.1], [10])
    dropped = choose_drops(scores, rule, [0.1])[0]
    assert counts == [3]  # 50% above chance, capped at 30%
    assert dropped.tolist() == torch.argsort(scores[0], descending=True)[:3].sort().values.tolist()


def test_min_keep_still_rules():
    counts, _, _ = adaptive_counts([0.9], [0.1], [3], min_keep=3)
    assert counts == [0]


def test_the_default_rule_is_adaptive_and_a_ratio_or_threshold_replaces_it():
    assert ReprConfig().adaptive
    assert not ReprConfig(ratio=0.1).adaptive and not ReprConfig(threshold=0.1).adaptive


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        ({"ratio": 0.1, "threshold": 0.1}, "give one"),
        ({"scope": "global"}, "scope global ranks the network's filters together by a ratio; give ratio too"),
    ],
)
def test_bad_rules_are_refused(kwargs, text):
    with pytest.raises(UsageError, match=text):
        ReprConfig(**kwargs)


def test_choose_drops_needs_the_chance_scores():
    with pytest.raises(ValueError, match="chance"):
        choose_drops([torch.rand(4)], ReprConfig())


def test_prune_drops_what_the_scores_say(run_cli, data_dir, tmp_path):
    """On a real checkpoint someone else trained, the counts follow from `score`'s own means."""
    ckpt = data_dir / "crepe_tiny.pt"
    scored = json.loads(run_cli("score", ckpt, "--json").stdout)["checkpoints"][0]["layers"]
    res = run_cli("prune", ckpt, "--json", "-o", tmp_path / "p.pt")
    assert res.exit_code == 0, res.stderr
    plan = json.loads(res.stdout)
    assert plan["rule"]["adaptive"] is True and plan["rule"]["ratio"] is None
    by_name = {layer["name"]: layer for layer in scored}
    for layer in plan["layers"]:
        s = by_name[layer["name"]]
        fan_in = math.prod(s["shape"][1:])
        chance = chance_score(fan_in, s["filters"])
        assert layer["mean"] == pytest.approx(s["mean"]) and layer["chance"] == pytest.approx(chance)
        share = max(0.0, 1 - chance / s["mean"])
        assert len(layer["dropped"]) == math.floor(s["filters"] * min(share, 0.3) + 1e-9), layer["name"]
    assert plan["total"]["dropped"] > 0
    assert (tmp_path / "p.pt").exists()


def test_prune_on_filters_below_chance_is_a_one_line_error(run_cli, tmp_path):
    """Filters at right angles are less redundant than random ones: nothing to drop, no file."""
    start = rewrite_convs(SAMPLE, tmp_path / "orthogonal.pt", orthogonal)
    res = run_cli("prune", start, "-o", tmp_path / "p.pt")
    assert res.exit_code == 2
    assert "no filter to drop" in res.stderr and "give --ratio" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "p.pt").exists()
    assert run_cli("prune", start, "--ratio", "0.1", "-o", tmp_path / "p.pt").exit_code == 0


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--ratio", "0.1", "--threshold", "0.1"], "--ratio and --threshold are two ways"),
        (["--scope", "global"], "--scope global ranks the network's filters together by a ratio; give --ratio"),
    ],
)
def test_bad_rule_options_are_one_line_usage_errors(run_cli, args, text):
    res = run_cli("prune", SAMPLE, *args, "-n")
    assert res.exit_code == 2 and text in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


SMALL = ["--data", "digits", "--max-samples", "200", "--width", "8", "--threads", "1"]


def start_with(cli_json, path: Path, shape_conv) -> Path:
    """A briefly trained 8-filter ConvNet whose candidate convs' weights `shape_conv` rewrites."""
    cli_json("train", *SMALL, "--cycles", "0", "--max-epochs", "1", "-o", path)
    return rewrite_convs(path, path, shape_conv)


def test_train_goes_on_when_no_layer_is_above_chance(cli_json, run_cli, tmp_path):
    """Filters at right angles: the cycle drops nothing, says so, and the run ends normally."""
    start = start_with(cli_json, tmp_path / "start.pt", orthogonal)
    res = run_cli("train", start, *SMALL, "--s1", "0", "--s2", "1", "--cycles", "1", "--json", "-o", tmp_path / "a.pt")
    assert res.exit_code == 0, res.stderr
    run = json.loads(res.stdout)
    assert run["config"]["ratio"] is None and run["config"]["threshold"] is None
    assert [c["dropped"] for c in run["cycles"]] == [{}]
    assert "RePr cycle 1:" in res.stderr and "no filter dropped (the rule chose none" in res.stderr
    assert (tmp_path / "a.pt").exists()


def test_train_cycle_drops_what_prune_plans(cli_json, tmp_path):
    """The steps and the one-shot pipeline agree: from the same weights, train's first cycle (no
    standard epoch before it) drops the filters `prune` plans."""
    start = start_with(cli_json, tmp_path / "start.pt", near_copies)

    plan = cli_json("prune", start, "-n")
    planned = {layer["name"]: len(layer["dropped"]) for layer in plan["layers"] if layer["dropped"]}
    run = cli_json("train", start, *SMALL, "--s1", "0", "--s2", "1", "--cycles", "1", "-o", tmp_path / "a.pt")

    assert planned == {"features.conv2": 2, "features.conv3": 2}  # far above chance: the cap, 30% of 8
    assert run["cycles"][0]["dropped"] == planned


def test_the_library_plans_the_same_drops(run_cli, data_dir):
    from orthocli import plan_drops
    from orthocli.checkpoints.checkpoint import load

    ckpt = data_dir / "crepe_tiny.pt"
    cli = json.loads(run_cli("prune", ckpt, "-n", "--json").stdout)
    plan = plan_drops(load(ckpt).state_dict)
    assert {k: v.tolist() for k, v in plan.drops.items()} == {
        layer["name"]: layer["dropped"] for layer in cli["layers"] if layer["dropped"]
    }


def test_a_one_filter_layer_among_the_candidates_is_no_internal_error(run_cli, tmp_path):
    """A one-filter layer scores 0 against a chance of 0: naming the closest layer must not divide by it."""
    q, _ = torch.linalg.qr(torch.randn(27, 8, generator=torch.Generator().manual_seed(0)))
    state = {
        "a.weight": torch.randn(8, 3, 3, 3),
        "b.weight": q.T.reshape(8, 3, 3, 3).contiguous(),  # orthogonal: below chance
        "c.weight": torch.randn(1, 8, 3, 3),  # one filter
        "d.weight": torch.randn(4, 1, 3, 3),
    }
    torch.save(state, tmp_path / "m.pt")
    res = run_cli("prune", tmp_path / "m.pt", "-n")
    assert res.exit_code == 2, res.stderr
    assert "no filter to drop" in res.stderr and "closest: b," in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
