"""Shared fixtures: a tiny conv model, checkpoint writers, and the CLI runner."""

from __future__ import annotations

import os
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from hypothesis import settings
from typer.testing import CliRunner

from orthocli.cli import app, common

DATA = Path(__file__).parent / "data"

# CI runs the same examples every time (a red CI run then means a change broke something, and it
# reproduces); locally hypothesis explores new examples on every run.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")  # third-party checkpoints, see data/SOURCES.md

# `orthocli train --baseline` runs its arms in worker processes by default on a machine with more
# than one free core; the suite's runs are tiny, where starting workers costs more than it saves,
# so they go one after another unless a test asks otherwise (tests/training/test_parallel_runs.py does).
os.environ.setdefault("ORTHOCLI_JOBS", "1")


def _torchvision_importable() -> None:
    """Where the torchvision installed is a CUDA build on a CPU torch (the only build for torch
    2.13 on some package indexes), its C extension does not load and its import then fails on two
    undefined detection ops, and so does that of lightning, which imports it. Defining those two
    op schemas is enough for what the tests use (the classification models, lightning): done only
    where the plain import fails, and only here, in the tests."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return  # not installed: tests/network/test_torchvision_zoo.py skips (except under CI=1)
    except Exception:  # RuntimeError: operator torchvision::nms does not exist
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _torchvision_importable.lib = lib  # the definitions live as long as the library object
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]


_torchvision_importable()


def make_tiny_model(seed: int = 0) -> torch.nn.Module:
    """conv1 (8 filters of 3x3x3), conv2 (16 filters, groups=2), fc (Linear, not a conv)."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        OrderedDict(
            conv1=torch.nn.Conv2d(3, 8, 3),
            act=torch.nn.ReLU(),
            conv2=torch.nn.Conv2d(8, 16, 3, groups=2),
            pool=torch.nn.AdaptiveAvgPool2d(1),
            flat=torch.nn.Flatten(),
            fc=torch.nn.Linear(16, 4),
        )
    )


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread while a module's tests train: for tiny models a second thread costs
    more than it saves, and far more on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    from orthocli.data import prepare

    return prepare("digits", max_samples=120, seed=0)  # 108 train, 12 val, 359 test, 1x8x8, 10 classes


@pytest.fixture
def tiny_model() -> torch.nn.Module:
    return make_tiny_model()


@pytest.fixture
def tiny_state_dict(tiny_model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in tiny_model.state_dict().items()}


def save_checkpoint(obj, path: Path, fmt: str = "zip") -> Path:
    """Write `obj` as a real checkpoint file. fmt: zip | legacy | safetensors | torchscript."""
    if fmt == "zip":
        torch.save(obj, path)
    elif fmt == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    elif fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in obj.items()}, str(path))
    elif fmt == "torchscript":
        torch.jit.save(torch.jit.script(obj), str(path))
    else:
        raise ValueError(fmt)
    return path


@pytest.fixture
def save_ckpt(tmp_path):
    """save_ckpt(obj, fmt="zip", name=None) -> path of the written file inside tmp_path."""

    def save(obj, fmt: str = "zip", name: str | None = None) -> Path:
        return save_checkpoint(obj, tmp_path / (name or f"model.{fmt}"), fmt)

    return save


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    # `--debug` sets a module-level flag that outlives one in-process invocation.
    monkeypatch.setitem(common.DEBUG, "on", False)


@pytest.fixture
def run_cli():
    """run_cli(*args) invokes the real app in-process; the result has separate .stdout and .stderr."""

    def run(*args, env: dict | None = None):
        base = {"NO_COLOR": "1", "FORCE_COLOR": None, "COLUMNS": "200"}
        return CliRunner().invoke(app, [str(a) for a in args], env={**base, **(env or {})})

    return run


@pytest.fixture
def cli_json(run_cli):
    """cli_json(*args): the command's --json document, after asserting it exited 0."""
    import json

    def run(*args):
        result = run_cli(*args, "--json")
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)

    return run


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def train_json(run_cli):
    """`orthocli train` at its smallest (train_helpers.TINY) plus `args`: its --json document."""
    import json

    from train_helpers import TINY

    def run(*args):
        result = run_cli("train", *TINY, *args, "--json")
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)

    return run


@pytest.fixture
def pruned(tmp_path) -> Path:
    """An orthocli checkpoint of a ConvNet with trained-like statistics and export_helpers.CONVNET_DROPS dropped."""
    from export_helpers import CONVNET_DROPS, convnet_arch, save_pruned

    return save_pruned(tmp_path / "pruned.pt", convnet_arch(), CONVNET_DROPS)
