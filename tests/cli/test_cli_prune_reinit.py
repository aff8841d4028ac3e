"""`orthocli prune` and `orthocli reinit` through the real app, on checkpoints others trained."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from orthocli.method.orthogonality import filter_rows, orthogonality_scores
from orthocli.network.models import ConvNet

SAMPLE = Path(__file__).parents[2] / "sample_models" / "mnist1d_convnet.pt"


def load_payload(path):
    return torch.load(path, weights_only=True)


def cos(a, b):
    return (a / a.norm(dim=-1, keepdim=True)) @ (b / b.norm(dim=-1, keepdim=True)).T


@pytest.fixture
def onet(tmp_path, data_dir):
    """MTCNN O-Net from facenet-pytorch (legacy pickle format), copied so tests never touch data/."""
    return shutil.copy(data_dir / "mtcnn_onet.pt", tmp_path / "onet.pt")


def test_round_trip_score_prune_reinit_on_a_real_checkpoint(run_cli, onet, tmp_path):
    original = torch.load(onet, weights_only=True)
    # O-Net's last conv feeds a Linear, which a bare state dict cannot show: --no-skip-last lets it drop
    res = run_cli(
        "prune", onet, "-o", tmp_path / "p.pt", "--ratio", "0.25", "--scope", "global", "--no-skip-last", "--json"
    )
    assert res.exit_code == 0, res.stderr
    plan = json.loads(res.stdout)
    conv_filters = {"conv2": 64, "conv3": 64, "conv4": 128}  # conv1 is skipped by default
    assert plan["excluded"] == ["conv1"]
    assert plan["total"] == {"filters": 256, "dropped": math.floor(0.25 * 256)}
    assert {layer["name"]: layer["filters"] for layer in plan["layers"]} == conv_filters
    # The plan drops the globally highest scores (recomputed independently here).
    scores = {n: orthogonality_scores(original[f"{n}.weight"]) for n in conv_filters}
    flat = sorted(((float(s), n, f) for n in conv_filters for f, s in enumerate(scores[n])), key=lambda t: -t[0])
    cut = flat[plan["total"]["dropped"] - 1][0]
    for layer in plan["layers"]:
        assert all(float(scores[layer["name"]][f]) >= cut - 1e-6 for f in layer["dropped"])

    pruned = load_payload(tmp_path / "p.pt")
    assert set(pruned["state_dict"]) == set(original)  # names kept: loads into the user's model
    for layer in plan["layers"]:
        idx = torch.tensor(layer["dropped"], dtype=torch.long)
        if len(idx):
            assert pruned["state_dict"][f"{layer['name']}.weight"][idx].abs().sum() == 0
            assert pruned["state_dict"][f"{layer['name']}.bias"][idx].abs().sum() == 0
            assert torch.equal(pruned["prune"]["layers"][layer["name"]]["dropped"], idx)
    # score sees the dropped filters as dead
    res = run_cli("score", tmp_path / "p.pt", "--json")
    dead = {layer["name"]: layer["dead"] for layer in json.loads(res.stdout)["checkpoints"][0]["layers"]}
    assert all(dead[layer["name"]] == layer["dropped"] for layer in plan["layers"])

    res = run_cli("reinit", tmp_path / "p.pt", "-o", tmp_path / "r.pt", "--seed", "3", "--json")
    assert res.exit_code == 0, res.stderr
    report = json.loads(res.stdout)
    after = load_payload(tmp_path / "r.pt")
    assert "prune" not in after and after["reinit"]["seed"] == 3
    for layer in plan["layers"]:
        name, dropped = layer["name"], layer["dropped"]
        if not dropped:
            continue
        w_new = filter_rows(after["state_dict"][f"{name}.weight"])[0]
        w_old = filter_rows(original[f"{name}.weight"])[0]
        kept = [f for f in range(layer["filters"]) if f not in dropped]
        assert torch.equal(w_new[kept], w_old[kept])  # kept filters bit-identical
        entry = next(e for e in report["layers"] if e["name"] == name)
        if entry["null_space"] == len(dropped):
            assert cos(w_new[dropped], w_new[kept]).abs().max() < 1e-6
            assert cos(w_new[dropped], w_old[dropped]).diagonal().abs().max() < 1e-6


def test_prune_with_a_known_architecture_masks_batchnorm_too(run_cli, tmp_path):
    torch.manual_seed(0)
    args = {"in_channels": 1, "num_classes": 10, "input_shape": [8, 8], "width": 8, "batchnorm": True}
    model = ConvNet(**args)
    torch.nn.init.uniform_(model.features.bn2.bias, 0.5, 1.0)
    torch.save(
        {
            "format": "orthocli",
            "format_version": 1,
            "state_dict": model.state_dict(),
            "arch": {"name": "convnet", "args": args},
        },
        tmp_path / "m.pt",
    )
    res = run_cli("prune", tmp_path / "m.pt", "-o", tmp_path / "p.pt", "--scope", "layer", "--ratio", "0.5", "--json")
    assert res.exit_code == 0, res.stderr
    out = load_payload(tmp_path / "p.pt")
    layer = out["prune"]["layers"]["features.conv2"]
    roles = {ch["role"] for ch in layer["channels"]}
    assert {"conv_weight", "conv_bias", "bn_weight", "bn_bias", "bn_mean", "bn_var"} <= roles
    idx = layer["dropped"]
    assert len(idx) == 4
    assert out["state_dict"]["features.bn2.bias"][idx].abs().sum() == 0  # BN(0) = beta would leak
    old_beta = next(ch["old"] for ch in layer["channels"] if ch["role"] == "bn_bias")
    assert torch.equal(old_beta, model.features.bn2.bias.detach()[idx])
    assert out["arch"]["name"] == "convnet"


def test_dry_run_writes_nothing_and_globs_choose_layers(run_cli, onet, tmp_path):
    res = run_cli("prune", onet, "--dry-run", "--json", "--exclude", "conv4", "--scope", "layer", "--ratio", "0.5")
    assert res.exit_code == 0, res.stderr
    plan = json.loads(res.stdout)
    assert plan["output"] is None and list(tmp_path.iterdir()) == [onet]
    assert [layer["name"] for layer in plan["layers"]] == ["conv2", "conv3"]
    assert sorted(plan["excluded"]) == ["conv1", "conv4"]
    assert all(len(layer["dropped"]) == layer["filters"] // 2 for layer in plan["layers"])
    res = run_cli("prune", onet, "--dry-run", "--json", "--no-skip-first", "--layers", "conv1", "--ratio", "0.5")
    assert [layer["name"] for layer in json.loads(res.stdout)["layers"]] == ["conv1"]


def test_human_output_lists_layers(run_cli, onet, tmp_path):
    res = run_cli("prune", onet, "-o", tmp_path / "p.pt")
    assert res.exit_code == 0
    assert "conv2" in res.stdout and "excluded" in res.stdout
    assert "Wrote" in res.stderr


@pytest.mark.parametrize(
    "args, code, text",
    [
        (["--ratio", "0"], 2, "--ratio must be between 0 and 1"),
        (["--ratio", "1.5"], 2, "--ratio must be between 0 and 1"),
        (["--threshold", "0.99"], 2, "drops no filter"),
        (["--threshold", "0.0"], 2, "would drop every filter"),
        (["--scope", "everything"], 2, "--scope"),
        (["--ratio", "0.001", "--min-keep", "1000"], 2, "drops no filter"),
    ],
)
def test_bad_prune_options_write_nothing(run_cli, onet, tmp_path, args, code, text):
    res = run_cli("prune", onet, "-o", tmp_path / "p.pt", *args)
    assert res.exit_code == code
    assert text in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1
    assert not (tmp_path / "p.pt").exists()


def test_output_rules(run_cli, onet, tmp_path):
    res = run_cli("prune", onet)
    assert res.exit_code == 2 and "-o/--output" in res.stderr
    res = run_cli("prune", onet, "-o", onet)
    assert res.exit_code == 5 and "is the input file" in res.stderr
    (tmp_path / "taken.pt").write_bytes(b"keep me")
    res = run_cli("prune", onet, "-o", tmp_path / "taken.pt")
    assert res.exit_code == 5 and "--force" in res.stderr
    assert (tmp_path / "taken.pt").read_bytes() == b"keep me"
    assert run_cli("prune", onet, "-o", tmp_path / "taken.pt", "--force").exit_code == 0
    res = run_cli("prune", tmp_path / "taken.pt", "-o", tmp_path / "again.pt")
    assert res.exit_code == 2 and "already pruned" in res.stderr
    assert not (tmp_path / "again.pt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_reinit_needs_a_pruned_checkpoint(run_cli, onet, tmp_path):
    res = run_cli("reinit", onet, "-o", tmp_path / "r.pt")
    assert res.exit_code == 4 and "orthocli prune" in res.stderr
    assert not (tmp_path / "r.pt").exists()


def test_reinit_reports_fallback_for_a_first_layer_without_room(run_cli, tmp_path, data_dir):
    # P-Net conv1: 10 filters of 3x3x3 = 27 dims; dropping 3 of them leaves room, so force
    # a layer without room: 40 filters of 27 dims.
    torch.manual_seed(0)
    sd = {"c.weight": torch.randn(40, 3, 3, 3), "d.weight": torch.randn(8, 40, 3, 3)}
    torch.save(sd, tmp_path / "m.pt")
    assert (
        run_cli(
            "prune",
            *(tmp_path / "m.pt", "-o", tmp_path / "p.pt", "--no-skip-first", "--no-skip-last", "--ratio", "0.1"),
        ).exit_code
        == 0
    )
    res = run_cli("reinit", tmp_path / "p.pt", "-o", tmp_path / "r.pt", "--json")
    layers = {layer["name"]: layer for layer in json.loads(res.stdout)["layers"]}
    assert layers["c"]["fallback"] is True and layers["c"]["null_space"] == 0
    assert layers["d"]["fallback"] is False
    assert "No room in the null space" in res.stderr and "c" in res.stderr


def test_outputs_are_ordinary_files_respecting_umask(run_cli, onet, tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        assert run_cli("prune", onet, "-o", tmp_path / "p.pt").exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "p.pt").stat().st_mode) == 0o644


def test_reinit_scale_sets_the_new_filters_norm(run_cli, onet, tmp_path):
    assert run_cli("prune", onet, "-o", tmp_path / "p.pt", "--scope", "layer").exit_code == 0
    res = run_cli("reinit", tmp_path / "p.pt", "-o", tmp_path / "r.pt", "--reinit-scale", "0.5", "--json")
    assert res.exit_code == 0, res.stderr
    pruned, after = load_payload(tmp_path / "p.pt"), load_payload(tmp_path / "r.pt")
    assert after["reinit"]["scale"] == 0.5
    for layer in pruned["prune"]["layers"].values():
        rows = filter_rows(after["state_dict"][layer["key"]])[0]
        dropped = layer["dropped"].tolist()
        kept = [f for f in range(len(rows)) if f not in dropped]
        want = 0.5 * float(rows[kept].norm(dim=1).mean())
        assert torch.allclose(rows[dropped].norm(dim=1), torch.full((len(dropped),), want), rtol=1e-4)
    assert run_cli("reinit", tmp_path / "p.pt", "-o", tmp_path / "r2.pt", "--reinit-scale", "0").exit_code == 2
    assert not (tmp_path / "r2.pt").exists()


@pytest.mark.parametrize("fan_out, factor", [("keep", 1.0), ("zero", 0.0)])
def test_reinit_fan_out_keeps_or_zeroes_the_next_layers_weights(run_cli, tmp_path, fan_out, factor):
    sample = shutil.copy(SAMPLE, tmp_path / "sample.pt")  # records its architecture: the next layers are known
    assert run_cli("prune", sample, "-o", tmp_path / "p.pt").exit_code == 0
    res = run_cli("reinit", tmp_path / "p.pt", "-o", tmp_path / "r.pt", "--reinit-fan-out", fan_out)
    assert res.exit_code == 0, res.stderr
    pruned, after = load_payload(tmp_path / "p.pt"), load_payload(tmp_path / "r.pt")
    layers = pruned["prune"]["layers"].values()
    nexts = [entry for layer in layers for entry in layer["fan_out"]]  # each layer's readers
    assert len(nexts) == 2  # conv2 -> conv3, conv3 -> flatten -> Linear
    renewed = {layer["key"]: layer["dropped"] for layer in layers}  # filters (dim 0) re-initialised themselves
    for nxt in nexts:
        before, now = pruned["state_dict"][nxt["key"]], after["state_dict"][nxt["key"]]
        rows = torch.ones(before.shape[0], dtype=torch.bool)
        rows[renewed.get(nxt["key"], [])] = False
        before, now = before[rows], now[rows]
        cols = torch.zeros(before.shape[nxt["dim"]], dtype=torch.bool)
        cols[nxt["index"]] = True
        assert torch.equal(now[:, cols], before[:, cols] * factor)
        assert torch.equal(now[:, ~cols], before[:, ~cols])  # the other channels' weights untouched


def test_prune_reads_its_options_from_a_config_file_and_flags_win(run_cli, tmp_path):
    """--config is the same merge train has (cli/config_file.py): the file's values for the options
    not given, keyed by the long option names; a flag given wins; an unknown key is a usage error."""
    config = tmp_path / "prune.toml"
    config.write_text("ratio = 0.5\nmin-keep = 2\nskip_first = false\n")
    doc = json.loads(run_cli("prune", SAMPLE, "--dry-run", "--json", "--config", config).stdout)
    assert (doc["rule"]["ratio"], doc["rule"]["min_keep"]) == (0.5, 2)
    doc = json.loads(run_cli("prune", SAMPLE, "--dry-run", "--json", "--config", config, "--ratio", "0.25").stdout)
    assert (doc["rule"]["ratio"], doc["rule"]["min_keep"]) == (0.25, 2)
    config.write_text("ratoi = 0.5\n")
    result = run_cli("prune", SAMPLE, "--dry-run", "--config", config)
    assert result.exit_code == 2 and "unknown option 'ratoi'" in result.stderr
    config.write_text("ratio = 2.0\n")
    result = run_cli("prune", SAMPLE, "--dry-run", "--config", config)
    assert result.exit_code == 2 and "ratio" in result.stderr and "Traceback" not in result.stderr


def test_prune_ranks_by_l1_and_refuses_a_criterion_that_needs_training_batches(run_cli, tmp_path):
    w = load_payload(SAMPLE)["state_dict"]
    res = run_cli("prune", SAMPLE, "--dry-run", "--ratio", "0.25", "--ranking", "l1", "--json")
    assert res.exit_code == 0, res.stderr
    plan = json.loads(res.stdout)
    assert plan["rule"]["ranking"] == "l1"
    for layer in plan["layers"]:
        norms = w[f"{layer['name']}.weight"].double().flatten(1).abs().sum(dim=1)
        assert sorted(layer["dropped"]) == sorted(norms.argsort()[: len(layer["dropped"])].tolist())
    for name in ("taylor", "activation"):
        res = run_cli("prune", SAMPLE, "-o", tmp_path / "p.pt", "--ratio", "0.25", "--ranking", name)
        assert (
            res.exit_code == 2 and f"the {name} ranking reads statistics gathered from training batches" in res.stderr
        )
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "p.pt").exists()
