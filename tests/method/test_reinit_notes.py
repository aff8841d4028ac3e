"""An "unknown" re-introduction says what the user can do, in the terms of where it was asked:
the library's parameters through the API, the flags on the command line."""

from __future__ import annotations

import json

import torch
from export_helpers import SIGRES_ARCH, trained_like

import orthocli.checkpoints.checkpoint as checkpoint
from orthocli import drop, reinitialize


def test_an_unknown_fan_out_names_the_library_parameter_through_the_api():
    # c1 -> sigmoid -> residual add: no reader to zero, no BatchNorm to start the branch at zero
    model = trained_like(SIGRES_ARCH)
    report = reinitialize(model, drop(model, {"c1": torch.tensor([0])}))
    note = report["c1"]["fan_out_note"]
    assert report["c1"]["fan_out"] == "unknown"
    assert "exclude the layer from dropping (exclude)" in note and "--" not in note


def test_an_unknown_fan_out_names_the_flag_on_the_command_line(run_cli, tmp_path):
    model = trained_like(SIGRES_ARCH)
    record = drop(model, {"c1": torch.tensor([0])})  # with the model's graph, as prune makes it
    src = tmp_path / "p.pt"
    data = {"mean": [0.5], "std": [0.25], "source": "test"}
    checkpoint.save(src, checkpoint.make_payload(model.state_dict(), arch=SIGRES_ARCH, data=data, prune=record))
    res = run_cli("reinit", src, "-o", tmp_path / "r.pt", "--json")
    assert res.exit_code == 0, res.stderr
    (layer,) = json.loads(res.stdout)["layers"]
    assert layer["fan_out"] == "unknown" and "exclude the layer from dropping (--exclude)" in layer["fan_out_note"]
