"""The README's tour, step by step, on the shipped sample model: score -> prune -> train
(sub-network) -> reinit -> train -> export, each step reading the previous step's file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file

from orthocli.config import ADAPTIVE_CAP
from orthocli.method.orthogonality import chance_score

SAMPLE = Path(__file__).parent.parent / "sample_models"


def run_json(run_cli, *args):
    res = run_cli(*args, "--json")
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def test_the_tour_on_the_sample_model(run_cli, tmp_path):
    doc = run_json(run_cli, "score", SAMPLE / "mnist1d_convnet.safetensors", "--top", "5")["checkpoints"][0]
    assert [layer["name"] for layer in doc["layers"]] == ["features.conv1", "features.conv2", "features.conv3"]
    assert all(layer["layout_known"] for layer in doc["layers"])  # the metadata records the arch
    again = run_json(run_cli, "score", SAMPLE / "mnist1d_convnet.safetensors", "--top", "5")
    assert again["checkpoints"] == [doc]  # deterministic

    plan = run_json(run_cli, "prune", SAMPLE / "mnist1d_convnet.pt", "-o", tmp_path / "pruned.pt")
    # the default rule: conv1 skipped; conv2 and conv3 (32 filters each, trained without RePr) each drop
    # their share of redundancy above random filters', by score's own means
    means = {layer["name"]: layer["mean"] for layer in doc["layers"]}
    chance = chance_score(32 * 3, 32)
    expected = {
        n: math.floor(32 * min(1 - chance / means[n], ADAPTIVE_CAP) + 1e-9) for n in means if n != "features.conv1"
    }
    assert {layer["name"]: len(layer["dropped"]) for layer in plan["layers"]} == expected
    assert all(expected.values())  # the sample model is redundant enough to show the method

    small = ["--threads", "1", "--max-samples", "300"]
    sub = run_json(run_cli, "train", tmp_path / "pruned.pt", "--s2", "2", "-o", tmp_path / "sub.pt", *small)
    assert sub["epochs"] == 2
    pruned, trained = (
        torch.load(tmp_path / "pruned.pt", weights_only=True),
        torch.load(tmp_path / "sub.pt", weights_only=True),
    )
    assert "prune" in trained  # still a sub-network: reinit can follow
    for layer in pruned["prune"]["layers"].values():
        w0, w1 = pruned["state_dict"][layer["key"]], trained["state_dict"][layer["key"]]
        assert torch.equal(w0[layer["dropped"]], w1[layer["dropped"]])  # frozen
        assert not torch.equal(w0, w1)  # the rest trained

    report = run_json(run_cli, "reinit", tmp_path / "sub.pt", "-o", tmp_path / "reinit.pt")
    assert sum(layer["dropped"] for layer in report["layers"]) == plan["total"]["dropped"]

    final = run_json(
        run_cli,
        "train",
        tmp_path / "reinit.pt",
        "--cycles",
        "0",
        "--max-epochs",
        "3",
        "-o",
        tmp_path / "final.pt",
        *small,
    )
    assert final["epochs"] <= 3 and final["test_accuracy"] > 0.3  # 3 x chance on MNIST-1D after 3 epochs of 300 samples

    exported = run_json(run_cli, "export", tmp_path / "final.pt", "-o", tmp_path / "model.safetensors")
    assert exported["verified"]["max_abs_diff"] <= 1e-4
    from orthocli.network.models import ConvNet

    state = load_file(str(tmp_path / "model.safetensors"))
    arch = torch.load(tmp_path / "final.pt", weights_only=True)["arch"]
    model = ConvNet(**arch["args"])
    model.load_state_dict(state, strict=True)  # loads into the plain model class
