"""One drop rule for the steps and the one-shot pipeline: `prune` -> `train` (the sub-network) ->
`reinit`, each with its defaults, drops the filters `train`'s cycle drops and re-initialises them
to the same values, given the same weights and seed (the seed convention: `seeding.reinit_seed`).
Every entry point takes its defaults from the one source, `ReprConfig`."""

from __future__ import annotations

import pytest
import torch
import typer.main
from train_helpers import make_model, make_optimizer, near_copies, rewrite_convs

import orthocli.checkpoints.checkpoint as ckpt_io
from orthocli import RePr, ReprConfig, drop, plan_drops, reinitialize
from orthocli.cli import app
from orthocli.config import TrainConfig, option_name

SMALL = ["--threads", "1", "--max-samples", "200", "--batch-size", "32", "--deterministic"]


pytestmark = pytest.mark.usefixtures("one_thread")


def redundant_start(cli_json, path):
    """A briefly trained 6-filter ConvNet whose conv2 and conv3 hold filters close to one another
    (as redundant as a trained layer gets), so that the default rule drops from both."""
    cli_json("train", *SMALL, "--width", "6", "--cycles", "0", "--max-epochs", "1", "-o", path)
    return rewrite_convs(path, path, near_copies)


@pytest.mark.parametrize("rule", [[], ["--ratio", "0.2"]], ids=["default", "ratio"])
def test_prune_train_reinit_step_by_step_equals_trains_cycle(cli_json, tmp_path, rule):
    start = redundant_start(cli_json, tmp_path / "start.pt")

    # one shot: train's cycle 1 from these weights (no standard epochs before the drop, none after)
    args = [*SMALL, "--s1", "0", "--s2", "2", "--cycles", "1", *rule]
    cycle = cli_json("train", start, *args, "-o", tmp_path / "a.pt")
    # step by step, each command with its defaults (and the same rule)
    plan = cli_json("prune", start, *rule, "-o", tmp_path / "pruned.pt")
    cli_json("train", tmp_path / "pruned.pt", *SMALL, "--s2", "2", "-o", tmp_path / "sub.pt")
    cli_json("reinit", tmp_path / "sub.pt", "-o", tmp_path / "b.pt")

    dropped = {layer["name"]: len(layer["dropped"]) for layer in plan["layers"] if layer["dropped"]}
    assert dropped.keys() == {"features.conv2", "features.conv3"}
    assert dropped == cycle["cycles"][0]["dropped"]
    assert plan["rule"]["scope"] == ReprConfig().scope and plan["rule"]["adaptive"] == (rule == [])
    a, b = ckpt_io.load(tmp_path / "a.pt").state_dict, ckpt_io.load(tmp_path / "b.pt").state_dict
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]

    # the seed decides the re-initialised values: another seed, other values in the dropped rows only
    cli_json("reinit", tmp_path / "sub.pt", "-o", tmp_path / "c.pt", "--seed", "1")
    c = ckpt_io.load(tmp_path / "c.pt").state_dict
    record = ckpt_io.load(tmp_path / "sub.pt").extras["prune"]
    for layer in record["layers"].values():
        key, rows = layer["key"], layer["dropped"]
        assert not torch.equal(c[key][rows], b[key][rows])
        kept = [i for i in range(b[key].shape[0]) if i not in rows.tolist()]
        assert torch.equal(c[key][kept], b[key][kept])


def test_every_entry_point_takes_its_defaults_from_reprconfig():
    one = ReprConfig()
    group = typer.main.get_command(app)
    for command in ("prune", "reinit", "train"):  # each option a command has, by its field's name
        defaults = {p.name: p.default for p in group.commands[command].params}
        shared = {f: getattr(one, f) for f in one.method_dict() if option_name(f) in defaults}
        assert shared, command
        given = {f: defaults[option_name(f)] for f in shared}
        assert {f: [] if v is None and shared[f] == [] else v for f, v in given.items()} == shared, command
    assert one.adaptive and one.reinit_fan_out == "zero"
    assert TrainConfig().method_dict() == one.method_dict()
    model = make_model()
    assert RePr(model, make_optimizer(model)).config == one
    assert plan_drops(model, ratio=0.25).rule_dict() == ReprConfig(ratio=0.25).rule_dict()
    # the plain functions' defaults are the same: re-introduction zeroes the next layer's weights
    record = drop(model, {"features.conv2": torch.tensor([1])})
    reinitialize(model, record)
    assert torch.count_nonzero(model.features.conv3.weight[:, 1]) == 0


def test_step_by_step_equals_train_on_a_depthwise_separable_block(cli_json, tmp_path):
    """pointwise -> BN -> ReLU -> depthwise -> BN -> ReLU -> pointwise (tests/graph_models.py): the
    depthwise conv's filters follow pw1's dropped channels, in `prune` and in `train`'s cycle alike."""
    arch = ["--arch", "graph_models:build", "--width", "8", "--data", "digits"]
    start = tmp_path / "start.pt"
    cli_json("train", *SMALL, *arch, "--cycles", "0", "--max-epochs", "1", "-o", start)
    payload = torch.load(start, weights_only=True)
    for key in ("pw1.weight", "pw2.weight"):
        near_copies(payload["state_dict"][key])
    torch.save(payload, start)

    data = ["--data", "digits", "--trust"]  # the checkpoints record the architecture's code: trusted
    args = [*SMALL, *data, "--s1", "0", "--s2", "2", "--cycles", "1", "--ratio", "0.25"]
    cycle = cli_json("train", start, *args, "-o", tmp_path / "a.pt")
    plan = cli_json("prune", start, "--ratio", "0.25", "--trust", "-o", tmp_path / "pruned.pt")
    cli_json("train", tmp_path / "pruned.pt", *SMALL, *data, "--s2", "2", "-o", tmp_path / "sub.pt")
    cli_json("reinit", tmp_path / "sub.pt", "-o", tmp_path / "b.pt")

    dropped = {layer["name"]: len(layer["dropped"]) for layer in plan["layers"] if layer["dropped"]}
    assert dropped == cycle["cycles"][0]["dropped"] and "pw1" in dropped
    record = ckpt_io.load(tmp_path / "sub.pt").extras["prune"]
    assert record["layers"]["pw1"]["follow"] == ["dw"]
    sub = ckpt_io.load(tmp_path / "sub.pt").state_dict
    rows = record["layers"]["pw1"]["dropped"]
    assert all(torch.count_nonzero(sub[k][rows]) == 0 for k in ("dw.weight", "dw.bias", "bn2.weight", "bn2.bias"))
    a, b = ckpt_io.load(tmp_path / "a.pt").state_dict, ckpt_io.load(tmp_path / "b.pt").state_dict
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
