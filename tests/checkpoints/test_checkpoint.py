"""Reading checkpoints from real files: formats, wrappers, trust, damaged input, conv discovery."""

from __future__ import annotations

import pickle
import random
import zipfile
from collections import OrderedDict

import pytest
import torch

import orthocli.checkpoints.checkpoint as checkpoint
from orthocli.checkpoints.model import CheckpointModel
from orthocli.errors import (
    EXIT_CHECKPOINT,
    EXIT_INPUT,
    EXIT_TRUST,
    CheckpointError,
    InputFileError,
    OrthoError,
    TrustError,
)
from orthocli.network.layers import ConvLayer, convs_from_module


def conv_names(ckpt) -> list[str]:
    return [layer.name for layer in CheckpointModel(ckpt).convs()]


def assert_same_tensors(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k


def assert_one_line_error(exc: OrthoError, path) -> None:
    msg = str(exc)
    assert str(path) in msg
    assert "\n" not in msg


# --- plain state dicts in every format -------------------------------------------------------


@pytest.mark.parametrize(
    "fmt,expected", [("zip", "torch-zip"), ("legacy", "torch-legacy"), ("safetensors", "safetensors")]
)
def test_state_dict_formats(save_ckpt, tiny_state_dict, fmt, expected):
    ckpt = checkpoint.load(save_ckpt(tiny_state_dict, fmt))
    assert ckpt.format == expected
    assert ckpt.module is None
    assert_same_tensors(ckpt.state_dict, tiny_state_dict)
    layers = CheckpointModel(ckpt).convs()
    assert [(c.name, c.key, tuple(c.weight.shape)) for c in layers] == [
        ("conv1", "conv1.weight", (8, 3, 3, 3)),
        ("conv2", "conv2.weight", (16, 4, 3, 3)),
    ]
    # A bare state dict records no groups or layout: both are assumed, and say so.
    assert all(c.groups == 1 and not c.transposed and not c.known for c in layers)


# --- dicts wrapping a state dict -------------------------------------------------------------


def _optimizer_state(model) -> dict:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    return opt.state_dict()


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_wrapped_state_dict(save_ckpt, tiny_state_dict, fmt):
    ckpt = checkpoint.load(save_ckpt({"state_dict": tiny_state_dict}, fmt))
    assert ckpt.key == "state_dict"
    assert_same_tensors(ckpt.state_dict, tiny_state_dict)


def test_training_script_wrapper_with_optimizer(save_ckpt, tiny_model):
    sd = tiny_model.state_dict()
    payload = {"model": sd, "optimizer": _optimizer_state(tiny_model), "epoch": 3}
    ckpt = checkpoint.load(save_ckpt(payload))
    assert ckpt.key == "model"
    assert_same_tensors(ckpt.state_dict, sd)
    assert conv_names(ckpt) == ["conv1", "conv2"]


def test_lightning_like_wrapper(save_ckpt, tiny_state_dict):
    sd = {f"model.{k}": v for k, v in tiny_state_dict.items()}
    payload = {
        "epoch": 7,
        "global_step": 700,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": sd,
        "hyper_parameters": {"lr": 0.01, "widths": [8, 16], "name": "tiny", "dropout": None},
        "callbacks": {},
    }
    ckpt = checkpoint.load(save_ckpt(payload))
    assert ckpt.key == "state_dict"
    assert conv_names(ckpt) == ["model.conv1", "model.conv2"]


def test_two_copies_of_the_model_are_ambiguous(save_ckpt, tiny_state_dict):
    ema = {k: v + 1 for k, v in tiny_state_dict.items()}
    path = save_ckpt({"model": tiny_state_dict, "ema": ema, "epoch": 3})
    with pytest.raises(CheckpointError) as e:
        checkpoint.load(path)
    assert e.value.exit_code == EXIT_CHECKPOINT
    assert "--key" in str(e.value) and "'model'" in str(e.value) and "'ema'" in str(e.value)
    assert_one_line_error(e.value, path)
    ckpt = checkpoint.load(path, key="ema")
    assert ckpt.key == "ema"
    assert_same_tensors(ckpt.state_dict, ema)
    assert_same_tensors(checkpoint.load(path, key="model").state_dict, tiny_state_dict)


def test_dotted_key(save_ckpt, tiny_state_dict):
    ema = {k: v * 2 for k, v in tiny_state_dict.items()}
    path = save_ckpt({"weights": {"raw": tiny_state_dict, "ema": ema}, "step": 10})
    with pytest.raises(CheckpointError, match="--key"):
        checkpoint.load(path)
    ckpt = checkpoint.load(path, key="weights.ema")
    assert ckpt.key == "weights.ema"
    assert_same_tensors(ckpt.state_dict, ema)


def test_bad_key(save_ckpt, tiny_state_dict):
    path = save_ckpt({"state_dict": tiny_state_dict, "epoch": 3})
    with pytest.raises(CheckpointError, match="no key 'nope'.*state_dict") as e:
        checkpoint.load(path, key="nope")
    assert_one_line_error(e.value, path)
    with pytest.raises(CheckpointError, match="'epoch' holds no tensors"):
        checkpoint.load(path, key="epoch")


def test_no_tensors_at_all(save_ckpt):
    path = save_ckpt({"epoch": 3, "config": {"lr": 0.1}})
    with pytest.raises(CheckpointError, match="no tensors") as e:
        checkpoint.load(path)
    assert_one_line_error(e.value, path)


def test_not_a_dict(save_ckpt):
    path = save_ckpt([torch.zeros(2, 2, 3)])
    with pytest.raises(CheckpointError, match="list") as e:
        checkpoint.load(path)
    assert_one_line_error(e.value, path)


# --- TorchScript and whole modules: the layout is known ---------------------------------------


class GroupedAndTransposed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.dw = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.up = torch.nn.ConvTranspose2d(8, 6, 2, stride=2, groups=2)
        self.head = torch.nn.Conv1d(6, 4, 1)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        y = self.up(self.dw(self.stem(x)))
        return self.fc(self.head(y.flatten(2)).mean(-1))


EXPECTED_KNOWN = [
    ("stem", (8, 3, 3, 3), 1, False, 8),
    ("dw", (8, 1, 3, 3), 8, False, 8),
    ("up", (8, 3, 2, 2), 2, True, 6),
    ("head", (4, 6, 1), 1, False, 4),
]


def _check_known_layers(layers: list[ConvLayer]) -> None:
    got = [(c.name, tuple(c.weight.shape), c.groups, c.transposed, c.filters) for c in layers]
    assert got == EXPECTED_KNOWN
    assert all(c.known for c in layers)


def test_torchscript(save_ckpt):
    torch.manual_seed(0)
    model = GroupedAndTransposed()
    path = save_ckpt(model, "torchscript")
    with pytest.raises(TrustError) as refused:  # torch.jit.load runs the archive's code
        checkpoint.load(path)
    assert_one_line_error(refused.value, path)
    assert "--trust" in str(refused.value)
    ckpt = checkpoint.load(path, trust=True)
    assert ckpt.format == "torchscript"
    assert ckpt.module is not None
    _check_known_layers(CheckpointModel(ckpt).convs())
    assert_same_tensors(ckpt.state_dict, model.state_dict())


def test_conv_layer_filters_and_fan_in():
    model = GroupedAndTransposed()
    by_name = {c.name: c for c in convs_from_module(model)}
    # filters = output channels; fan_in = length of one filter = (in/groups) * prod(kernel)
    assert (by_name["stem"].filters, by_name["stem"].fan_in) == (8, 27)
    assert (by_name["dw"].filters, by_name["dw"].fan_in) == (8, 9)
    assert (by_name["up"].filters, by_name["up"].fan_in) == (6, 4 * 4)
    assert (by_name["head"].filters, by_name["head"].fan_in) == (4, 6)


def test_whole_module_needs_trust(save_ckpt):
    torch.manual_seed(0)
    model = GroupedAndTransposed()
    path = save_ckpt(torch.nn.Sequential(OrderedDict(net=model)), "zip")
    with pytest.raises(TrustError) as e:
        checkpoint.load(path)
    assert e.value.exit_code == EXIT_TRUST
    assert "--trust" in str(e.value)
    assert_one_line_error(e.value, path)
    ckpt = checkpoint.load(path, trust=True)
    assert ckpt.format == "module"
    layers = CheckpointModel(ckpt).convs()
    assert [c.name for c in layers] == [f"net.{n}" for n, *_ in EXPECTED_KNOWN]
    assert [(c.groups, c.transposed) for c in layers] == [(g, t) for _, _, g, t, _ in EXPECTED_KNOWN]


def test_module_inside_a_wrapper_needs_trust(save_ckpt, tiny_model):
    path = save_ckpt({"model": tiny_model, "epoch": 1}, "legacy")
    with pytest.raises(TrustError):
        checkpoint.load(path)
    ckpt = checkpoint.load(path, trust=True)
    assert [(c.name, c.groups) for c in CheckpointModel(ckpt).convs()] == [("conv1", 1), ("conv2", 2)]


class _Payload:
    """Unpickling this would create a file: proof that code from the file ran."""

    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("how", ["zip", "legacy", "pickle"])
def test_malicious_pickle_is_refused_without_running(tmp_path, tiny_state_dict, how):
    marker = tmp_path / "pwned"
    evil = _Payload()
    evil.marker = marker
    payload = {"state_dict": tiny_state_dict, "extra": evil}
    path = tmp_path / "evil.pt"
    if how == "pickle":
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=how == "zip")
    assert not marker.exists()
    with pytest.raises(TrustError) as e:
        checkpoint.load(path)
    assert not marker.exists()
    assert e.value.exit_code == EXIT_TRUST
    assert_one_line_error(e.value, path)


# --- files that are not checkpoints -------------------------------------------------------------


def _truncated(src, dst, keep: float):
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def _random_bytes(path, seed: int):
    rnd = random.Random(seed)
    data = bytes(rnd.randrange(256) for _ in range(4096))
    while data[:1] == b"\x80" or data[:2] == b"PK":  # those would be sniffed as pickle / zip
        data = data[1:]
    path.write_bytes(data)
    return path


def _foreign_zip(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model/readme.txt", "not a torch file")
    return path


def _bad(tmp_path, tiny_state_dict, kind):
    if kind == "missing":
        return tmp_path / "does_not_exist.pt"
    if kind == "directory":
        (tmp_path / "ckpt_dir").mkdir()
        return tmp_path / "ckpt_dir"
    if kind == "empty":
        (tmp_path / "empty.pt").touch()
        return tmp_path / "empty.pt"
    if kind.startswith("truncated"):
        fmt, keep = kind.split("-")[1], float(kind.split("-")[2])
        src = tmp_path / "whole.pt"
        torch.save(tiny_state_dict, src, _use_new_zipfile_serialization=fmt == "zip")
        return _truncated(src, tmp_path / "cut.pt", keep)
    if kind.startswith("random"):
        return _random_bytes(tmp_path / "noise.bin", int(kind[-1]))
    if kind == "text":
        (tmp_path / "notes.pt").write_text("epoch 3: loss 0.25\nconv1.weight = ...\n")
        return tmp_path / "notes.pt"
    if kind == "foreign-zip":
        return _foreign_zip(tmp_path / "archive.pt")
    raise ValueError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "missing",
        "directory",
        "empty",
        "truncated-zip-0.5",
        "truncated-zip-0.99",
        "truncated-legacy-0.05",
        "truncated-legacy-0.5",
        "truncated-legacy-0.99",
        "random-0",
        "random-1",
        "random-2",
        "text",
        "foreign-zip",
    ],
)
def test_unreadable_input(tmp_path, tiny_state_dict, kind):
    path = _bad(tmp_path, tiny_state_dict, kind)
    with pytest.raises(InputFileError) as e:
        checkpoint.load(path)
    assert e.value.exit_code == EXIT_INPUT
    assert_one_line_error(e.value, path)


def test_truncated_safetensors(tmp_path, save_ckpt, tiny_state_dict):
    path = _truncated(save_ckpt(tiny_state_dict, "safetensors"), tmp_path / "cut.safetensors", 0.7)
    with pytest.raises(InputFileError) as e:
        checkpoint.load(path)
    assert_one_line_error(e.value, path)


def test_truncated_torchscript(tmp_path, save_ckpt):
    path = _truncated(save_ckpt(GroupedAndTransposed(), "torchscript"), tmp_path / "cut.jit", 0.6)
    with pytest.raises(InputFileError) as e:
        checkpoint.load(path, trust=True)
    assert_one_line_error(e.value, path)
