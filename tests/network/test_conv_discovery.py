"""Finding the conv layers of a checkpoint: from bare weights, globs, and real checkpoints trained by others."""

from __future__ import annotations

import pytest
import torch

import orthocli.checkpoints.checkpoint as checkpoint
from orthocli.checkpoints.model import CheckpointModel
from orthocli.errors import (
    CheckpointError,
    OrthoError,
    UsageError,
)
from orthocli.network.layers import convs_from_state_dict, select


def assert_one_line_error(exc: OrthoError, path) -> None:
    msg = str(exc)
    assert str(path) in msg
    assert "\n" not in msg


# --- conv discovery -------------------------------------------------------------------------


def test_convs_from_state_dict_takes_3d_to_5d_float_weights_only():
    sd = {
        "a.weight": torch.zeros(4, 2, 3),
        "b.weight": torch.zeros(4, 2, 3, 3),
        "c.weight": torch.zeros(4, 2, 1, 3, 3),
        "fc.weight": torch.zeros(4, 2),  # Linear
        "bn.weight": torch.zeros(4),
        "a.bias": torch.zeros(4, 2, 3),  # not a weight
        "q.weight": torch.zeros(4, 2, 3, 3, dtype=torch.int8),  # quantised storage, not floats
        "six.weight": torch.zeros(1, 1, 1, 1, 1, 1),
        "basis": torch.zeros(4, 1, 8),
        "weight": torch.zeros(2, 2, 2),  # a bare Conv1d's own state dict
    }
    assert [(c.name, c.key) for c in convs_from_state_dict(sd)] == [
        ("a", "a.weight"),
        ("b", "b.weight"),
        ("c", "c.weight"),
        ("weight", "weight"),
    ]


def test_select_globs():
    sd = {f"{n}.weight": torch.zeros(2, 2, 3) for n in ["features.0", "features.3", "classifier.0", "conv1"]}
    layers = convs_from_state_dict(sd)
    names = lambda ls: [c.name for c in ls]  # noqa: E731
    assert names(select(layers, None, None)) == ["features.0", "features.3", "classifier.0", "conv1"]
    assert names(select(layers, ["features.*"], None)) == ["features.0", "features.3"]
    assert names(select(layers, ["features.*", "conv?"], ["*.3"])) == ["features.0", "conv1"]
    assert names(select(layers, None, ["conv1", "classifier.*"])) == ["features.0", "features.3"]
    assert names(select(layers, ["Features.*"], None)) == []  # case-sensitive


def test_select_convs_errors(save_ckpt):
    path = save_ckpt({"fc.weight": torch.zeros(4, 8), "fc.bias": torch.zeros(4)})
    with pytest.raises(CheckpointError, match="no conv layers") as e:
        CheckpointModel(checkpoint.load(path)).select_convs()
    assert_one_line_error(e.value, path)
    path = save_ckpt({"conv1.weight": torch.zeros(4, 2, 3)}, name="c.pt")
    with pytest.raises(UsageError, match=r"layers 'nothing\*' matches no conv layer.*conv1"):  # exit 2: a typo
        CheckpointModel(checkpoint.load(path)).select_convs(["nothing*"], None)


# --- real checkpoints trained by others (tests/data/SOURCES.md) ----------------------------


REAL = {
    "crepe_tiny.pt": (
        "torch-zip",
        [
            ("conv1", (128, 1, 512, 1)),
            ("conv2", (16, 128, 64, 1)),
            ("conv3", (16, 16, 64, 1)),
            ("conv4", (16, 16, 64, 1)),
            ("conv5", (32, 16, 64, 1)),
            ("conv6", (64, 32, 64, 1)),
        ],
    ),
    "mtcnn_pnet.pt": (
        "torch-legacy",
        [
            ("conv1", (10, 3, 3, 3)),
            ("conv2", (16, 10, 3, 3)),
            ("conv3", (32, 16, 3, 3)),
            ("conv4_1", (2, 32, 1, 1)),
            ("conv4_2", (4, 32, 1, 1)),
        ],
    ),
    "mtcnn_onet.pt": (
        "torch-legacy",
        [
            ("conv1", (32, 3, 3, 3)),
            ("conv2", (64, 32, 3, 3)),
            ("conv3", (64, 64, 3, 3)),
            ("conv4", (128, 64, 2, 2)),
        ],
    ),
    "lpips_alex.pth": (
        "torch-legacy",
        [(f"lin{i}.model.1", (1, c, 1, 1)) for i, c in enumerate([64, 192, 384, 256, 256])],
    ),
    "silero_vad.jit": (
        "torchscript",
        [
            (f"{m}.{n}", s)
            for m, first_in in [("_model", 129), ("_model_8k", 65)]
            for n, s in [
                ("encoder.0.reparam_conv", (128, first_in, 3)),
                ("encoder.1.reparam_conv", (64, 128, 3)),
                ("encoder.2.reparam_conv", (64, 64, 3)),
                ("encoder.3.reparam_conv", (128, 64, 3)),
                ("decoder.decoder.2", (1, 128, 1)),
            ]
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_checkpoints(data_dir, name):
    fmt, expected = REAL[name]
    ckpt = checkpoint.load(data_dir / name, trust=fmt == "torchscript")  # TorchScript runs code: --trust only
    assert ckpt.format == fmt
    layers = CheckpointModel(ckpt).convs()
    assert [(c.name, tuple(c.weight.shape)) for c in layers] == expected
    assert all(c.groups == 1 and not c.transposed for c in layers)
    assert all(torch.isfinite(c.weight).all() for c in layers)


def test_silero_convs_come_from_the_torchscript_modules(data_dir):
    ckpt = checkpoint.load(data_dir / "silero_vad.jit", trust=True)
    assert isinstance(ckpt.module, torch.jit.ScriptModule)
    layers = CheckpointModel(ckpt).convs()
    assert all(c.known for c in layers)
    mods = dict(ckpt.module.named_modules())
    assert all(mods[c.name].original_name == "Conv1d" for c in layers)
    # The STFT basis is a 3-D buffer used through F.conv1d, not a conv layer.
    assert ckpt.state_dict["_model.stft.forward_basis_buffer"].dim() == 3
    assert not any("stft" in c.name for c in layers)


def test_real_linear_weights_are_not_convs(data_dir):
    assert "classifier.weight" in checkpoint.load(data_dir / "crepe_tiny.pt").state_dict
    onet = checkpoint.load(data_dir / "mtcnn_onet.pt")
    assert "dense5.weight" in onet.state_dict
    assert not any(c.name.startswith(("classifier", "dense")) for c in CheckpointModel(onet).convs())
