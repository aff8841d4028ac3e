"""The command line takes the models people train (issue 33 item 4): `train --arch pkg:fn` gives a
builder only the arguments it names (its **kwargs only --arch-args), a builder's own error is a
usage error, the data's channels are checked against the first conv with a way out, the resulting
checkpoints prune, re-initialise and compact, a trusted pickled model compacts too; and the route
docs/commands.md shows for torchvision and timm runs as written."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_helpers import TINY

import orthocli.checkpoints.checkpoint as ckpt_io
from orthocli.errors import EXIT_CHECKPOINT, EXIT_DATA, EXIT_TRUST, EXIT_USAGE

ROOT = Path(__file__).parents[2]

# A builder shaped like torchvision's: keyword-only, **kwargs handed on to a class that refuses
# names it does not know (in_channels, input_shape), 1,000 classes unless told.
KWARGS_MODELS = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes=1000, width=4, channels=1):
        super().__init__()
        if width % 2:
            raise ValueError(f"width must be even, got {width}")
        self.c1 = nn.Conv2d(channels, width, 3, padding=1)
        self.b1 = nn.BatchNorm2d(width)
        self.c2 = nn.Conv2d(width, width, 3, padding=1)
        self.b2 = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        x = torch.relu(self.b1(self.c1(x)))
        return self.fc(torch.relu(self.b2(self.c2(x))).mean((2, 3)))


def net(*, weights=None, progress=True, **kwargs):
    return Net(**kwargs)
"""


@pytest.fixture
def kwargs_module(tmp_path, monkeypatch):
    """A uniquely named module holding KWARGS_MODELS (the in-process runner caches imports)."""
    name = f"kw_models_{abs(hash(str(tmp_path)))}"
    (tmp_path / f"{name}.py").write_text(KWARGS_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_a_kwargs_builder_gets_only_the_arch_args_and_they_are_recorded(run_cli, kwargs_module, tmp_path):
    out = tmp_path / "k.pt"
    res = run_cli("train", *TINY, "--arch", f"{kwargs_module}:net", "--arch-args", "num_classes=10", "-o", out)
    assert res.exit_code == 0, res.stderr
    arch = ckpt_io.load(out).extras["arch"]
    # --width 4 (in TINY) names no parameter of net(): not handed to its **kwargs
    assert arch["args"] == {"num_classes": 10} and arch["sample_shape"] == [1, 8, 8]
    assert "Warning" not in res.stderr
    # JSON values keep their type; the builder's own parameter name goes through
    out2 = tmp_path / "k2.pt"
    res = run_cli(
        "train", *TINY, "--arch", f"{kwargs_module}:net", "--arch-args", "num_classes=10", "--arch-args", "width=6",
        "-o", out2,
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert ckpt_io.load(out2).extras["arch"]["args"] == {"num_classes": 10, "width": 6}
    assert ckpt_io.load(out2).state_dict["c1.weight"].shape[0] == 6


def test_a_builder_left_at_its_own_class_count_is_warned(run_cli, kwargs_module, tmp_path):
    res = run_cli("train", *TINY, "--arch", f"{kwargs_module}:net", "-o", tmp_path / "w.pt")
    assert res.exit_code == 0, res.stderr
    assert (
        "Warning: the model's last Linear has 1000 outputs and the data 10 classes; give the builder its argument"
        " for that (--arch-args num_classes=10)" in res.stderr
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch-args", "depth=3"], "unexpected keyword argument 'depth'"),
        (["--arch-args", "width=5"], "called with width=5: ValueError: width must be even, got 5"),
        (["--arch-args", "width"], "--arch-args 'width': expected KEY=VALUE, e.g. num_classes=10"),
    ],
)
def test_a_builder_refusing_its_arguments_is_a_usage_error(run_cli, kwargs_module, tmp_path, args, message):
    res = run_cli("train", *TINY, "--arch", f"{kwargs_module}:net", *args, "-o", tmp_path / "x.pt")
    assert res.exit_code == EXIT_USAGE, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("Error: ")
    assert list(tmp_path.glob("x.pt*")) == []


def test_a_package_whose_import_fails_is_a_usage_error(run_cli, tmp_path, monkeypatch):
    (tmp_path / "broken_pkg_zoo.py").write_text("raise RuntimeError('operator torchvision::nms does not exist')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    res = run_cli("train", *TINY, "--arch", "broken_pkg_zoo:resnet18", "-o", tmp_path / "x.pt")
    assert res.exit_code == EXIT_USAGE, res.stderr
    assert "cannot import it (RuntimeError: operator torchvision::nms does not exist)" in res.stderr


def test_data_with_other_channels_than_the_first_conv_says_how(run_cli, kwargs_module, tmp_path):
    res = run_cli(
        "train", *TINY, "--arch", f"{kwargs_module}:net", "--arch-args", "num_classes=10", "--arch-args", "channels=3",
        "-o", tmp_path / "x.pt",
    )  # fmt: skip
    assert res.exit_code == EXIT_DATA, res.stderr
    assert "the model's first conv reads 3 channels and the data has 1" in res.stderr
    assert "--arch-args in_chans=1 for timm" in res.stderr


def test_a_builder_naming_in_channels_gets_the_datas(run_cli, tmp_path, monkeypatch):
    (tmp_path / "named_zoo.py").write_text(
        KWARGS_MODELS + "\n\ndef named(in_channels, num_classes, **kwargs):\n"
        "    return Net(num_classes=num_classes, channels=in_channels, **kwargs)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    res = run_cli("train", *TINY, "--arch", "named_zoo:named", "-o", tmp_path / "n.pt")
    assert res.exit_code == 0, res.stderr
    assert ckpt_io.load(tmp_path / "n.pt").extras["arch"]["args"] == {"in_channels": 1, "num_classes": 10}


def test_the_checkpoints_prune_reinit_and_compact(run_cli, kwargs_module, tmp_path):
    out = tmp_path / "k.pt"
    res = run_cli("train", *TINY, "--arch", f"{kwargs_module}:net", "--arch-args", "num_classes=10", "-o", out)
    assert res.exit_code == 0, res.stderr
    pruned, small = tmp_path / "p.pt", tmp_path / "s.pt"
    res = run_cli("prune", out, "-o", pruned, "--ratio", "0.5", "--trust")
    assert res.exit_code == 0, res.stderr
    res = run_cli("reinit", pruned, "-o", tmp_path / "r.pt", "--json")
    assert res.exit_code == 0, res.stderr
    res = run_cli("export", pruned, "-o", small, "--format", "orthocli", "--compact", "--trust", "--json")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["verified"]["max_abs_diff"] <= 1e-5 and doc["after"]["params"] < doc["before"]["params"]
    # the compact checkpoint rebuilds itself through the recorded builder (code: with --trust only)
    assert run_cli("prune", small, "-o", tmp_path / "p2.pt", "--ratio", "0.5").exit_code == EXIT_TRUST
    res = run_cli("score", small, "--trust", "--json")
    assert res.exit_code == 0, res.stderr
    widths = {layer["name"]: layer["filters"] for layer in json.loads(res.stdout)["checkpoints"][0]["layers"]}
    assert widths == {"c1": 4, "c2": 2}


def test_a_recorded_builder_that_refuses_its_arguments_is_a_checkpoint_error(run_cli, kwargs_module, tmp_path):
    out = tmp_path / "k.pt"
    res = run_cli("train", *TINY, "--arch", f"{kwargs_module}:net", "--arch-args", "num_classes=10", "-o", out)
    assert res.exit_code == 0, res.stderr
    payload = torch.load(out, weights_only=True)
    payload["arch"]["args"]["depth"] = 3  # as if the installed package changed since
    torch.save(payload, tmp_path / "changed.pt")
    res = run_cli("prune", tmp_path / "changed.pt", "-o", tmp_path / "p.pt", "--ratio", "0.5", "--trust")
    assert res.exit_code == EXIT_CHECKPOINT, res.stderr
    assert "the recorded architecture" in res.stderr and "unexpected keyword argument 'depth'" in res.stderr


def test_a_pickled_model_prunes_reinits_and_compacts(run_cli, kwargs_module, tmp_path):
    module = __import__(kwargs_module)
    torch.manual_seed(0)
    torch.save(module.Net(num_classes=3, width=8, channels=3), tmp_path / "m.pt")
    pruned = tmp_path / "p.pt"
    res = run_cli("prune", tmp_path / "m.pt", "-o", pruned, "--ratio", "0.5", "--trust")
    assert res.exit_code == 0, res.stderr
    assert run_cli("reinit", pruned, "-o", tmp_path / "r.pt").exit_code == EXIT_TRUST  # it holds the model's code
    res = run_cli("reinit", pruned, "-o", tmp_path / "r.pt", "--trust")
    assert res.exit_code == 0, res.stderr
    reinit = ckpt_io.load(tmp_path / "r.pt", trust=True)
    assert isinstance(reinit.module, torch.nn.Module)
    assert all(torch.equal(reinit.module.state_dict()[k], v) for k, v in reinit.state_dict.items())
    small = tmp_path / "s.pt"
    res = run_cli(
        "export", pruned, "-o", small, "--format", "orthocli", "--compact", "--trust", "--input-shape", "3,8,8",
        "--json",
    )  # fmt: skip
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["verified"]["against"] == "outputs" and doc["verified"]["max_abs_diff"] <= 1e-5
    assert doc["after"]["params"] < doc["before"]["params"]
    compact = ckpt_io.load(small, trust=True)
    assert compact.module.c2.out_channels == compact.module.fc.in_features == 4  # smaller (c1: skipped first)
    x = torch.randn(2, 3, 8, 8)
    masked = ckpt_io.load(pruned, trust=True)
    assert compact.module.eval()(x).shape == masked.module.eval()(x).shape == (2, 3)


def test_a_pickled_model_pruned_to_safetensors_says_why_it_cannot_compact(run_cli, kwargs_module, tmp_path):
    module = __import__(kwargs_module)
    torch.save(module.Net(num_classes=3, width=8, channels=3), tmp_path / "m.pt")
    pruned = tmp_path / "p.safetensors"
    assert run_cli("prune", tmp_path / "m.pt", "-o", pruned, "--ratio", "0.5", "--trust").exit_code == 0
    res = run_cli("export", pruned, "-o", tmp_path / "s.pt", "--compact", "--trust", "--input-shape", "3,8,8")
    assert res.exit_code == EXIT_CHECKPOINT
    assert "a .pt output keeps it, a .safetensors one cannot" in res.stderr


# --- the documented route, as written ------------------------------------------------------------------------


def _routes() -> dict[str, str]:
    """docs/commands.md's blocks marked `<!-- route: NAME -->`, by name."""
    text = (ROOT / "docs" / "commands.md").read_text()
    return {m[1]: m[2] for m in re.finditer(r"<!-- route: (.+?) -->\n```\w+\n(.*?)```", text, re.S)}


def _imports_plainly(module: str) -> bool:
    out = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, timeout=120)
    return out.returncode == 0


def _run_route(block: str, where: Path) -> list[str]:
    """Each line of a documented bash block, run as written in `where`; their stdout."""
    bin_dir = str(Path(sys.executable).parent)  # `orthocli` and `python` of this environment
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ["PATH"], "NO_COLOR": "1", "COLUMNS": "200"}
    outs = []
    for line in block.strip().splitlines():
        proc = subprocess.run(["bash", "-c", line], cwd=where, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{line}\n{proc.stderr[-3000:]}"
        outs.append(proc.stdout)
    return outs


def _route_dir(tmp_path: Path) -> Path:
    routes = _routes()
    exec(compile(routes["data"], "docs data block", "exec"), {"__name__": "route_data"})  # writes shapes.npz
    (tmp_path / "mymodels.py").write_text(routes["mymodels.py"])
    return tmp_path


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _check_compact(where: Path, stem: str) -> None:
    source = ckpt_io.load(where / f"{stem}-pruned.pt").extras
    compact = ckpt_io.load(where / f"{stem}-small.pt").extras
    assert compact["arch"]["target"] == source["arch"]["target"] and compact["arch"]["args"] == source["arch"]["args"]
    assert compact["arch"]["widths"]  # narrower layers, recorded so the file rebuilds itself


@pytest.mark.parametrize("route", ["torchvision", "torchvision via mymodels"])
def test_the_documented_torchvision_route_runs_as_written(in_tmp, route):
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed")
    if route == "torchvision" and not _imports_plainly("torchvision"):
        pytest.skip("import torchvision fails here (CUDA torchvision beside a CPU torch): the mymodels route runs")
    where = _route_dir(in_tmp)
    outs = _run_route(_routes()[route], where)
    arch = ckpt_io.load(where / "r18.pt").extras["arch"]
    assert arch["target"].endswith(":resnet18") and arch["args"] == {"num_classes": 3}
    assert ckpt_io.load(where / "r18-reinit.pt").extras["reinit"]["layers"]
    _check_compact(where, "r18")
    assert "layer4.1.conv1" in outs[-1]  # score's table of the compact model


@pytest.mark.parametrize("route", ["timm", "timm via mymodels"])
def test_the_documented_timm_route_runs_as_written(in_tmp, route):
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm is not installed (optional: pip install timm)")
    if route == "timm" and not _imports_plainly("timm"):
        pytest.skip("import timm fails here (it imports torchvision, which needs the fix): the mymodels route runs")
    where = _route_dir(in_tmp)
    _run_route(_routes()[route], where)
    arch = ckpt_io.load(where / "t18.pt").extras["arch"]
    assert arch["args"] == {"model_name": "resnet18", "in_chans": 1, "num_classes": 10}
    _check_compact(where, "t18")


def test_a_resumed_run_keeps_its_arch_args(tmp_path):
    """--resume rebuilds the run from its state file: the builder's --arch-args are in it (a state
    file written before --arch-args, without the key, reads as none)."""
    from orthocli.training.options import DataOptions, HardwareOptions, ModelOptions, OutputOptions, RunMeta

    meta = RunMeta(
        model=ModelOptions(arch="pkg.mod:net", arch_args={"num_classes": 10, "dims": [1, 2]}),
        data=DataOptions(),
        outputs=OutputOptions(output=tmp_path / "r.pt"),
        hardware=HardwareOptions(),
    )
    doc = json.loads(json.dumps(meta.to_dict()))  # as the state file stores it
    assert RunMeta.from_dict(doc, tmp_path).model.arch_args == {"num_classes": 10, "dims": [1, 2]}
    del doc["arch_args"]
    assert RunMeta.from_dict(doc, tmp_path).model.arch_args is None


def test_a_pickled_model_whose_package_fails_to_import_is_not_called_damaged(run_cli, tmp_path, monkeypatch):
    """With --trust, unpickling imports the model's package; one whose import raises (a CUDA
    torchvision beside a CPU torch: RuntimeError) is a checkpoint error naming the failure (exit 4),
    not a "damaged or truncated" file (exit 3)."""
    (tmp_path / "fragile_zoo.py").write_text(KWARGS_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    import fragile_zoo

    torch.save(fragile_zoo.Net(num_classes=3), tmp_path / "m.pt")
    (tmp_path / "fragile_zoo.py").write_text("raise RuntimeError('operator torchvision::nms does not exist')\n")
    monkeypatch.delitem(sys.modules, "fragile_zoo")
    res = run_cli("score", tmp_path / "m.pt", "--trust")
    assert res.exit_code == EXIT_CHECKPOINT, res.stderr
    assert "needs code that is not importable here (operator torchvision::nms does not exist)" in res.stderr
