"""`orthocli train` through the real app: JSON, files written, options from TOML, resume, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from train_helpers import TINY

import orthocli.checkpoints.checkpoint as ckpt_io
from orthocli.cli import train as train_cli
from orthocli.config import TrainConfig
from orthocli.errors import EXIT_DATA
from orthocli.network.models import build_model
from orthocli.training.options import DataOptions, HardwareOptions, ModelOptions, OutputOptions

SUMMARY_KEYS = {"val_accuracy", "test_accuracy", "epochs", "best_epoch", "stopped_early", "cycles", "output"}
CYCLE_KEYS = {"cycle", "val_before_drop", "val_after_subnet", "val_after_reinit", "dropped", "fallbacks"}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_json_summary_and_files(train_json, tmp_path):
    out = tmp_path / "m.pt"
    doc = train_json("-o", out, "--metrics", tmp_path / "m.jsonl", "--save-cycles")
    assert doc.keys() >= SUMMARY_KEYS and doc["output"] == str(out) and doc["epochs"] == 3
    assert [set(c) for c in doc["cycles"]] == [CYCLE_KEYS] and doc["cycles"][0]["cycle"] == 1
    assert sum(doc["cycles"][0]["dropped"].values()) > 0
    assert 0 <= doc["val_accuracy"] <= 1 and 0 <= doc["test_accuracy"] <= 1

    ckpt = ckpt_io.load(out)  # self-describing: rebuilds its own model
    model = build_model(ckpt.extras["arch"])
    model.load_state_dict(ckpt.state_dict)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    assert ckpt.extras["config"]["s1"] == 1 and ckpt.extras["config"]["width"] == 4
    assert len(ckpt.extras["history"]) == 3 and ckpt.extras["data"]["num_classes"] == 10
    assert "prune" not in ckpt.extras  # re-introduced: a whole network again

    lines = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in lines] == [1, 2, 3] and {e["run"] for e in lines} == {"repr"}
    assert {"phase", "cycle", "loss", "train_acc", "val_acc", "lr"} <= lines[0].keys()
    assert ckpt_io.load(tmp_path / "m.cycle1.pt").extras["cycle"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.cycle1.pt", "m.jsonl", "m.pt"]  # no state left


def test_baseline_has_the_same_keys(train_json, tmp_path):
    doc = train_json("-o", tmp_path / "m.pt", "--baseline")
    base = doc["baseline"]
    assert set(base) == SUMMARY_KEYS and base["output"] == str(tmp_path / "m.baseline.pt")
    assert [set(c) for c in base["cycles"]] == [CYCLE_KEYS] and base["cycles"][0]["dropped"] == {}
    assert base["epochs"] == doc["epochs"]
    assert ckpt_io.load(tmp_path / "m.baseline.pt").extras["role"] == "baseline"


def test_table_output(run_cli, tmp_path):
    result = run_cli("train", *TINY, "-o", tmp_path / "m.pt", "--baseline")
    assert result.exit_code == 0, result.stderr
    for text in ("RePr cycles", "before drop", "test accuracy", "baseline", "difference"):
        assert text in result.stdout
    assert "RePr cycle 1: val" in result.stderr  # no terminal: one line per cycle instead of a bar


def test_resnet20_and_sigmoid_mse(train_json, tmp_path):
    doc = train_json(
        "-o", tmp_path / "r.pt", "--arch", "resnet20", "--scope", "layer", "--activation", "sigmoid", "--loss", "mse"
    )
    assert doc["epochs"] == 3 and doc["config"]["arch"] == "resnet20" and doc["config"]["loss"] == "mse"
    assert build_model(ckpt_io.load(tmp_path / "r.pt").extras["arch"]).__class__.__name__ == "ResNet20"


def test_default_output_goes_to_runs(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli("train", *TINY, "--cycles", "0", "--max-epochs", "1")
    assert result.exit_code == 0, result.stderr
    written = list((tmp_path / "runs").glob("convnet-*.pt"))
    assert len(written) == 1 and written[0].name.endswith("Z.pt")


def test_pruned_checkpoint_trains_the_sub_network(train_json, tmp_path):
    from orthocli.api import drop, plan_drops

    train_json("-o", tmp_path / "m.pt", "--cycles", "0", "--max-epochs", "1")
    ckpt = ckpt_io.load(tmp_path / "m.pt")
    model = build_model(ckpt.extras["arch"])
    model.load_state_dict(ckpt.state_dict)
    record = drop(model, plan_drops(model, ratio=0.5))
    pruned = {k: v.clone() for k, v in model.state_dict().items()}
    ckpt_io.save(tmp_path / "p.pt", ckpt_io.make_payload(pruned, arch=ckpt.extras["arch"], prune=record))

    doc = train_json(tmp_path / "p.pt", "--s2", "2", "-o", tmp_path / "s.pt")
    assert doc["epochs"] == 2 and doc["cycles"] == []
    out = ckpt_io.load(tmp_path / "s.pt")
    assert set(out.extras["prune"]["layers"]) == set(record["layers"])  # `orthocli reinit` can follow
    for layer in record["layers"].values():
        key = layer["key"]
        idx = layer["dropped"]
        assert torch.equal(out.state_dict[key][idx], pruned[key][idx])  # frozen
        assert not torch.equal(out.state_dict[key], pruned[key])  # the rest trained


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--arch", "vgg"], 2, "unknown architecture 'vgg'"),
        (["--arch", "no_such_pkg.mod:fn"], 2, "cannot import"),
        (["--optimizer", "rmsprop"], 2, ""),
        (["--max-epochs", "1", "--cycles", "2"], 2, "shorter than the cycles"),
        (["--arch", "resnet20", "--depth", "3"], 2, "does not take depth"),
    ],
)
def test_bad_options(run_cli, tmp_path, args, code, message):
    result = run_cli("train", *TINY, *args, "-o", tmp_path / "m.pt")
    assert result.exit_code == code and message in result.stderr
    assert list(tmp_path.iterdir()) == []


def _npz(path, x, y, **more):
    np.savez(path, x=np.asarray(x, dtype=np.float32), y=np.asarray(y), **more)
    return path


def test_bad_data_exit_7_and_nothing_written(run_cli, train_json, tmp_path):
    rng = np.random.default_rng(0)
    out = tmp_path / "out"
    out.mkdir()
    empty = _npz(tmp_path / "empty.npz", np.zeros((0, 1, 8, 8)), np.zeros(0, dtype=np.int64))
    labels = _npz(
        tmp_path / "labels.npz",
        rng.normal(size=(30, 1, 8, 8)),
        rng.integers(0, 3, 30),
        x_test=rng.normal(size=(5, 1, 8, 8)),
        y_test=np.array([0, 1, 2, 7, 1]),
    )
    colour = _npz(tmp_path / "colour.npz", rng.normal(size=(40, 3, 8, 8)), np.arange(40) % 10)
    many = _npz(tmp_path / "many.npz", rng.normal(size=(60, 1, 8, 8)), np.arange(60) % 12)
    few = _npz(tmp_path / "few.npz", rng.normal(size=(3, 1, 8, 8)), np.array([0, 1, 4]))  # labels name 5 classes
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    base = tmp_path / "base.pt"
    train_json("-o", base, "--cycles", "0", "--max-epochs", "1")
    cases = [
        (["--data", empty], "empty"),
        (["--data", labels], "test labels out of range"),
        (["--data", tmp_path / "junk.npz"], "damaged"),
        ([base, "--data", colour], "does not fit the model"),  # a 1-channel model, 3-channel data
        ([base, "--data", many], "labels out of range"),  # 10 outputs, 12 classes
        (["--data", few], "3 training samples for 5 classes (labels 0..4); training needs at least one sample per"),
    ]
    for args, message in cases:
        result = run_cli("train", *TINY, *args, "-o", out / "m.pt", "--metrics", out / "m.jsonl")
        assert result.exit_code == 7, (args, result.stderr)
        assert message in result.stderr and result.stderr.splitlines()[-1].startswith("Error: ")
        assert list(out.iterdir()) == [], args


def test_an_empty_validation_split_is_a_warning(run_cli, tmp_path):
    rng = np.random.default_rng(1)
    tiny = _npz(tmp_path / "tiny.npz", rng.normal(size=(4, 1, 8, 8)), np.arange(4))  # one sample per class
    result = run_cli("train", *TINY, "--data", tiny, "-o", tmp_path / "m.pt", "--json")
    assert result.exit_code == 0, result.stderr
    assert "Warning: the validation split is empty (4 samples): no early stopping" in result.stderr
    doc = json.loads(result.stdout)
    assert doc["val_accuracy"] is None and doc["stopped_early"] is False and doc["epochs"] == 3
    chosen = run_cli("train", *TINY, "--data", tiny, "--val-fraction", "0", "-o", tmp_path / "n.pt")
    assert chosen.exit_code == 0 and "validation split is empty" not in chosen.stderr  # asked for: no warning


def test_existing_output_needs_force(run_cli, tmp_path):
    out = tmp_path / "m.pt"
    out.write_bytes(b"keep me")
    result = run_cli("train", *TINY, "-o", out, "--metrics", tmp_path / "m.jsonl")
    assert result.exit_code == 5 and "--force" in result.stderr
    assert out.read_bytes() == b"keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    assert run_cli("train", *TINY, "-o", out, "--force").exit_code == 0


def test_plot_without_matplotlib_is_a_clear_error(run_cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    result = run_cli("train", *TINY, "-o", tmp_path / "m.pt", "--plot", tmp_path / "p.png")
    assert result.exit_code == 2
    assert "--plot needs matplotlib: pip install 'orthocli[plot]'" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_defaults_are_the_typed_options_defaults():
    import dataclasses
    import inspect

    params = inspect.signature(train_cli.train.__wrapped__).parameters
    for name, default in TrainConfig().to_dict().items():  # by option name: --schedule is lr_schedule
        if name == "ranking":  # each run's own: the method's, and a control arm's (--control random)
            continue
        if name in ("layers", "exclude"):
            assert params[name].default is None and default == []
        else:
            assert params[name].default == default, name
    for options in (ModelOptions, DataOptions, OutputOptions, HardwareOptions):
        for f in dataclasses.fields(options):
            if f.name == "builtin":  # given as --data NAME
                continue
            assert params[f.name].default == f.default, f.name


def test_every_option_field_has_a_parameter_and_every_parameter_a_field():
    """Adding an option to train means declaring it (config.py or training/options.py) and giving it a
    parameter of the same name: the command builds the typed options by name, so a field without a
    parameter, or a parameter that reaches no field, fails here."""
    import dataclasses
    import inspect

    params = set(inspect.signature(train_cli.train.__wrapped__).parameters) - {"ctx"}
    fields = set(train_cli.TRAIN_OPTIONS)
    for options in (ModelOptions, DataOptions, OutputOptions, HardwareOptions):
        fields |= {f.name for f in dataclasses.fields(options)}
    fields -= {"builtin"}  # given as --data NAME
    assert set(TrainConfig().to_dict()) - set(train_cli.TRAIN_OPTIONS) == {"ranking"}  # each arm's own
    assert sorted(fields - params) == [], "fields without a parameter"
    assert sorted(params - fields - set(train_cli.COMMAND_ONLY)) == [], "parameters that reach no field"


def test_the_options_reach_the_run_by_name(run_cli, tmp_path, monkeypatch):
    """Every option given on the command line arrives in the typed options the run gets, under its
    field's name (a changed default for each, so a parameter passed to the wrong field shows)."""
    from orthocli.training import experiment

    seen = {}

    def fresh(cfg, **options):
        seen.update(cfg=cfg, **options)
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment.Experiment, "fresh", staticmethod(fresh))
    out = tmp_path / "m.pt"
    result = run_cli(
        "train", "--data", str(tmp_path / "set.npz"), "--test-data", str(tmp_path / "t.npz"), "--schedule",
        "cosine", "--layers", "conv1", "--width", "12", "--max-samples", "99", "--metrics", str(tmp_path / "m.jsonl"),
        "--threads", "2", "--s1", "3", "--lr", "0.05", "--save-cycles", "-o", str(out),
    )  # fmt: skip
    assert result.exit_code != 0 and seen, result.stderr
    cfg = seen["cfg"]
    assert (cfg.lr_schedule, cfg.layers, cfg.s1, cfg.lr) == ("cosine", ["conv1"], 3, 0.05)
    assert seen["model"].width == 12 and seen["data"].max_samples == 99
    assert seen["data"].data == tmp_path / "set.npz" and seen["data"].test_data == tmp_path / "t.npz"
    assert seen["outputs"].metrics == tmp_path / "m.jsonl" and seen["outputs"].save_cycles is True
    assert seen["outputs"].output == out and seen["hardware"].threads == 2


def test_help_does_not_import_torch():
    code = (
        "import sys\nfrom orthocli.cli import app\ntry:\n    app(['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().endswith("False"), out.stderr


def test_user_architecture_by_import_path(train_json, tmp_path, monkeypatch):
    (tmp_path / "my_models.py").write_text(
        "from torch import nn\n\n"
        "def small(in_channels, num_classes, input_shape, width=5):\n"
        "    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),\n"
        "                         nn.Conv2d(width, width, 3, padding=1),\n"
        "                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    doc = train_json("--arch", "my_models:small", "-o", tmp_path / "u.pt")
    assert doc["epochs"] == 3 and list(doc["cycles"][0]["dropped"]) == ["2"]  # the first conv is skipped
    arch = ckpt_io.load(tmp_path / "u.pt").extras["arch"]
    assert arch["target"] == "my_models:small" and arch["args"]["width"] == 4


def test_an_error_with_an_empty_message_keeps_its_exit_code(run_cli, tmp_path, monkeypatch):
    """A model whose forward raises an exception with no message: the data-does-not-fit error
    (exit 7) names the exception's type, instead of an internal error (exit 70)."""
    (tmp_path / "silent_models.py").write_text(
        "from torch import nn\n\n"
        "class Silent(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(1, 4, 3)\n\n"
        "    def forward(self, x):\n"
        "        raise ValueError()\n\n"
        "def silent(in_channels, num_classes, input_shape):\n"
        "    return Silent()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_cli("train", *TINY, "--arch", "silent_models:silent", "-o", tmp_path / "s.pt")
    assert result.exit_code == EXIT_DATA, result.stderr
    assert result.stderr.strip().splitlines()[-1:] == [
        "Error: the data does not fit the model: samples of shape 1x8x8 (C x spatial) fail in its forward pass"
        " (ValueError)"
    ]
    assert not (tmp_path / "s.pt").exists()


def test_start_from_checkpoints(train_json, tmp_path):
    train_json("-o", tmp_path / "a.pt", "--cycles", "0", "--max-epochs", "2")
    a = ckpt_io.load(tmp_path / "a.pt")
    doc = train_json(
        tmp_path / "a.pt", "-o", tmp_path / "b.pt", "--cycles", "0", "--max-epochs", "1"
    )  # arch from the file
    assert doc["config"]["checkpoint"] == str(tmp_path / "a.pt")
    assert ckpt_io.load(tmp_path / "b.pt").extras["arch"] == a.extras["arch"]

    ckpt_io.save(tmp_path / "bare.pt", dict(a.state_dict))  # a bare state dict: --arch says how to build it
    assert (
        train_json(
            tmp_path / "bare.pt", "-o", tmp_path / "c.pt", "--arch", "convnet", "--cycles", "0", "--max-epochs", "1"
        )["epochs"]
        == 1
    )


def test_bare_state_dict_needs_arch(run_cli, tmp_path):
    torch.save({"conv.weight": torch.zeros(4, 1, 3, 3)}, tmp_path / "bare.pt")
    result = run_cli("train", *TINY, tmp_path / "bare.pt", "-o", tmp_path / "m.pt")
    assert result.exit_code == 4 and "give --arch" in result.stderr
    result = run_cli("train", *TINY, tmp_path / "bare.pt", "--arch", "convnet", "-o", tmp_path / "m.pt")
    assert result.exit_code == 4 and "do not fit the architecture" in result.stderr
    assert not (tmp_path / "m.pt").exists()


def test_train_prune_train_reinit_compose(run_cli, train_json, tmp_path):
    """The separate steps chain: a pruned checkpoint trains its sub-network, and reinit follows."""
    train_json("-o", tmp_path / "a.pt", "--cycles", "0", "--max-epochs", "1")
    assert run_cli("prune", tmp_path / "a.pt", "-o", tmp_path / "p.pt", "--ratio", "0.5").exit_code == 0
    doc = train_json(tmp_path / "p.pt", "--s2", "1", "-o", tmp_path / "s.pt")
    assert doc["epochs"] == 1
    result = run_cli("reinit", tmp_path / "s.pt", "-o", tmp_path / "r.pt", "--json")
    assert result.exit_code == 0, result.stderr
    assert sum(layer["dropped"] for layer in json.loads(result.stdout)["layers"]) > 0


def test_plot_draws_both_runs_with_the_subnetwork_phases_shaded(run_cli, tmp_path):
    pytest.importorskip("matplotlib")
    result = run_cli("train", *TINY, "--baseline", "-o", tmp_path / "m.pt", "--plot", tmp_path / "p.png", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["plot"] == str(tmp_path / "p.png")
    png = (tmp_path / "p.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    import matplotlib.image

    pixels = matplotlib.image.imread(tmp_path / "p.png")
    assert pixels.shape[0] > 300 and pixels.shape[1] > 600


def test_a_trusted_pickled_module_trains_only_with_trust(run_cli, tmp_path):
    from orthocli.network.models import ConvNet

    torch.save(ConvNet(1, 10, [8, 8], width=8), tmp_path / "whole.pt")
    refused = run_cli("train", tmp_path / "whole.pt", *TINY, "-o", tmp_path / "w.pt")
    assert refused.exit_code == 6 and "--trust" in refused.stderr
    assert not (tmp_path / "w.pt").exists()
    res = run_cli("train", tmp_path / "whole.pt", "--trust", *TINY, "-o", tmp_path / "w.pt", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["epochs"] == 3 and sum(doc["cycles"][0]["dropped"].values()) > 0
    assert set(torch.load(tmp_path / "w.pt", weights_only=True)["state_dict"]) == set(
        ConvNet(1, 10, [8, 8], width=8).state_dict()
    )


def test_help_groups_the_options_in_panels_and_flags_show_no_type(run_cli):
    import re

    result = run_cli("train", "--help")
    assert result.exit_code == 0
    panels: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        title = re.match(r"╭─ (.+?) ─", line)
        if title:
            current = panels.setdefault(title.group(1), [])
        elif option := re.match(r"│ (--[\w-]+)", line):
            current.append(option.group(1))
    expected = {
        "Schedule": ["--s1", "--s2", "--cycles", "--max-epochs", "--patience"],
        "Which filters drop": ["--ratio", "--threshold", "--scope", "--min-keep", "--layers", "--exclude"],
        "Model": ["--arch", "--width", "--activation", "--loss", "--key", "--trust"],
        "Data": ["--data", "--test-data", "--val-fraction", "--max-samples"],
        "Optimisation": ["--optimizer", "--lr", "--schedule", "--batch-size", "--seed", "--deterministic"],
        "Hardware": ["--device", "--precision", "--threads"],
        "Output": ["--output", "--force", "--baseline", "--metrics", "--config", "--resume", "--json"],
    }
    assert [p for p in panels if p in expected] == list(expected)  # in this order
    for panel, options in expected.items():
        assert set(options) <= set(panels[panel]), panel
    assert sum(map(len, panels.values())) >= 40 and panels["Options"] == ["--help"]
    assert "<bool>" not in result.stdout
    assert re.search(r"--force\s+-f\s+Overwrite", result.stdout)  # a flag: no type between name and help


def test_built_in_sets_by_name_and_a_path_of_the_same_name(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quick = [a for a in TINY if a not in ("--data", "digits")] + ["--json"]
    default = run_cli("train", *quick, "-o", "a.pt")
    assert default.exit_code == 0, default.stderr
    doc = json.loads(default.stdout)  # no --data: MNIST-1D, recorded by name so --config repeats it
    assert (doc["config"]["data"], doc["data"]["source"], doc["data"]["input_shape"]) == (
        "mnist1d",
        "mnist1d (built-in)",
        [40],
    )
    (tmp_path / "digits").mkdir()  # a folder that shadows the name: the name still means the built-in set
    named = run_cli("train", *quick, "--data", "digits", "-o", "b.pt")
    assert named.exit_code == 0, named.stderr
    assert json.loads(named.stdout)["data"]["source"] == "digits (built-in)"
    assert "--data digits is the built-in set; for the file or folder of that name write ./digits" in named.stderr
    path = run_cli("train", *quick, "--data", "./digits", "-o", "c.pt")
    assert path.exit_code == 7 and "digits: folder holds no data" in path.stderr  # ./NAME is the path


def test_a_diverged_run_is_reported_and_the_other_arm_kept(run_cli, tmp_path):
    # Re-introduced filters a 1e30 times too long overflow the loss after the first re-introduction;
    # the control never re-introduces, so it finishes.
    out = tmp_path / "m.pt"
    res = run_cli("train", *TINY, "--reinit-scale", "1e30", "--baseline", "-o", out, "--json")
    assert res.exit_code == 8, res.stderr
    assert res.stderr.splitlines()[-1] == (
        "Error: the RePr run diverged (the loss stopped being finite; see above); lower --lr"
    )
    assert "RePr: training diverged in epoch 3 (final phase)" in res.stderr
    doc = json.loads(res.stdout)
    assert doc["diverged"] == {
        "epoch": 3,
        "phase": "final",
        "cycle": None,
        "message": "training diverged in epoch 3 (final phase): the loss is not finite; lower --lr",
    }
    assert doc["output"] is None and doc["baseline"]["output"] == str(tmp_path / "m.baseline.pt")
    assert 0 <= doc["baseline"]["test_accuracy"] <= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.baseline.pt"]  # no state file left to resume
    alone = run_cli("train", *TINY, "--reinit-scale", "1e30", "-o", tmp_path / "alone.pt")
    assert alone.exit_code == 8 and alone.stderr.splitlines()[-1].startswith("Error: training diverged in epoch 3")
    assert not (tmp_path / "alone.pt").exists()


def test_seeds_pairs_summary_files_and_resume(run_cli, tmp_path):
    out = tmp_path / "s.pt"
    alone = run_cli("train", *TINY, "--seeds", "3", "-o", out)
    assert (
        alone.exit_code == 2
        and "--seeds compares the method with its control seed by seed: add --baseline" in alone.stderr
    )
    args = ["train", *TINY, "--baseline", "--seeds", "3", "--seed", "4", "-o", out, "--json"]
    first = run_cli(*args)
    assert first.exit_code == 0, first.stderr
    doc = json.loads(first.stdout)
    assert [s["seed"] for s in doc["seeds"]] == [4, 5, 6]
    assert "Seed 5 (2 of 3): RePr then control, writing" in first.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"s.seed{k}{tag}.pt" for k in (4, 5, 6) for tag in (".baseline", "")]
    test = doc["summary"]["test_accuracy"]
    method = [s["repr"]["test_accuracy"] for s in doc["seeds"]]
    control = [s["baseline"]["test_accuracy"] for s in doc["seeds"]]
    diffs = [m - c for m, c in zip(method, control)]
    assert test["n"] == doc["summary"]["pairs"] == 3 and test["wins"] == sum(d > 0 for d in diffs)
    assert test["mean_difference"] == pytest.approx(sum(diffs) / 3)
    half = 4.303 * float(np.std(diffs, ddof=1)) / 3**0.5  # t(0.975, 2 df)
    assert (test["ci_low"], test["ci_high"]) == pytest.approx(
        (test["mean_difference"] - half, test["mean_difference"] + half)
    )
    assert test["method"]["mean"] == pytest.approx(sum(method) / 3) and "val_accuracy" in doc["summary"]
    # an interrupted sweep: seeds 5 and 6 never finished; --resume reads 4 back and trains the others
    for p in [*tmp_path.glob("s.seed5*"), *tmp_path.glob("s.seed6*")]:
        p.unlink()
    kept = (tmp_path / "s.seed4.pt").stat().st_mtime_ns
    again = run_cli(*args, "--resume")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["seeds"] == doc["seeds"]  # the same runs, the same results
    assert (tmp_path / "s.seed4.pt").stat().st_mtime_ns == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == names
