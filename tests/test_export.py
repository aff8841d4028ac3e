"""`orthocli export`: a round trip per format, compaction equal to the masked sub-network on every
built-in architecture and a user one, compact checkpoints that rebuild, score and retrain, and
the refusals with their exit codes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from train_helpers import ONE_CYCLE

from orthocli import checkpoint
from orthocli.banks import banks_from_model
from orthocli.compact import compacted, param_count
from orthocli.export import _masked, probe_batch
from orthocli.layers import checkpoint_convs
from orthocli.models import ConvNet, build_model, model_of
from orthocli.subnet import apply_drops, make_record

# the tests load TorchScript files themselves; torch 2.9+ marks torch.jit.load deprecated
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


# --- a user architecture, rebuilt through {"name": "callable", "target": "test_export:make_user_net"}


class UserNet(nn.Module):
    """conv -> bn -> relu -> conv -> relu -> flatten (view) -> linear."""

    def __init__(self, in_channels: int = 1, num_classes: int = 4, input_shape=(6, 6), width: int = 6) -> None:
        super().__init__()
        h, w = input_shape
        self.c1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.act = nn.ReLU()
        self.c2 = nn.Conv2d(width, width, 3, padding=1)
        self.fc = nn.Linear(width * h * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn(self.c1(x)))
        x = torch.relu(self.c2(x))
        return self.fc(x.view(x.size(0), -1))


def make_user_net(**kwargs) -> nn.Module:
    return UserNet(**kwargs)


class DepthwiseNet(nn.Module):
    def __init__(self, **_) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(torch.flatten(self.dw(torch.relu(self.c1(x))), 1))


def make_depthwise_net(**kwargs) -> nn.Module:
    return DepthwiseNet(**kwargs)


class SigmoidResidualNet(nn.Module):
    """c1 -> sigmoid -> (c2(.) + .) -> flatten -> fc: c1 feeds a residual add through sigmoid."""

    def __init__(self, **_) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        x = torch.sigmoid(self.c1(x))
        return self.fc(torch.flatten(self.c2(x) + x, 1))


def make_sigmoid_residual_net(**kwargs) -> nn.Module:
    return SigmoidResidualNet(**kwargs)


USER_ARCH = {
    "name": "callable",
    "target": "test_export:make_user_net",
    "args": {"in_channels": 1, "num_classes": 4, "input_shape": [6, 6], "width": 6},
}
DW_ARCH = {
    "name": "callable",
    "target": "test_export:make_depthwise_net",
    "args": {"in_channels": 1, "num_classes": 3, "input_shape": [6, 6]},
}
SIGRES_ARCH = {
    "name": "callable",
    "target": "test_export:make_sigmoid_residual_net",
    "args": {"in_channels": 1, "num_classes": 3, "input_shape": [6, 6]},
}


def convnet_arch(**over) -> dict:
    args = {"in_channels": 1, "num_classes": 10, "input_shape": [8, 8], "width": 8, "batchnorm": True}
    return {"name": "convnet", "args": {**args, **over}}


RESNET_ARCH = {"name": "resnet20", "args": {"in_channels": 1, "num_classes": 10, "input_shape": [8, 8], "width": 4}}


def trained_like(arch: dict, seed: int = 0) -> nn.Module:
    """A model with non-trivial BatchNorm statistics and affine parameters and non-zero biases."""
    torch.manual_seed(seed)
    model = build_model(arch)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
            elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.uniform_(-0.3, 0.3)
        model.train()
        shape = [arch["args"]["in_channels"], *arch["args"]["input_shape"]]
        for _ in range(3):
            model(torch.randn(16, *shape) * 2 + 0.5)
    return model.eval()


def prune(model: nn.Module, drops: dict[str, list[int]]) -> tuple[dict, dict]:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    record = make_record(state, banks_from_model(model), {k: torch.tensor(v) for k, v in drops.items()}, {"ratio": 0.3})
    apply_drops(state, record)
    model.load_state_dict(state)
    return state, record


def save_pruned(path: Path, arch: dict, drops: dict[str, list[int]], seed: int = 0) -> Path:
    model = trained_like(arch, seed)
    state, record = prune(model, drops)
    data = {"mean": [0.5], "std": [0.25], "source": "test"}
    checkpoint.save(path, checkpoint.make_payload(state, arch=arch, data=data, prune=record))
    return path


CONVNET_DROPS = {"features.conv1": [1, 3], "features.conv2": [0, 5, 7], "features.conv3": [2]}


@pytest.fixture
def pruned(tmp_path) -> Path:
    return save_pruned(tmp_path / "pruned.pt", convnet_arch(), CONVNET_DROPS)


def export_json(run_cli, *args):
    result = run_cli("export", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def probe_for(arch: dict) -> torch.Tensor:
    return probe_batch([arch["args"]["in_channels"], *arch["args"]["input_shape"]])


# --- round trip per format ---------------------------------------------------------------------


def test_safetensors_loads_strict_into_model_class_with_extras_in_metadata(run_cli, pruned, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    out = tmp_path / "model.safetensors"
    doc = export_json(run_cli, pruned, "-o", out)
    assert doc["format"] == "safetensors" and doc["verified"]["against"] == "outputs"
    assert doc["verified"]["max_abs_diff"] <= 1e-4
    state = load_file(str(out))
    model = ConvNet(**convnet_arch()["args"])
    assert set(state) == set(model.state_dict())  # no stray keys
    model.load_state_dict(state, strict=True)
    with safe_open(str(out), framework="pt") as f:
        meta = json.loads(f.metadata()["orthocli"])
    assert meta["arch"] == convnet_arch()
    assert meta["data"]["mean"] == [0.5]
    assert meta["orthocli_version"]
    assert meta["prune_summary"]["layers"]["features.conv2"]["dropped"] == [0, 5, 7]
    # orthocli reads its own export back, architecture included
    assert checkpoint.load(out).extras["arch"] == convnet_arch()


def test_pt_is_a_plain_state_dict(run_cli, pruned, tmp_path):
    out = tmp_path / "model.pt"
    export_json(run_cli, pruned, "-o", out)
    state = torch.load(out, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    model = ConvNet(**convnet_arch()["args"])
    model.load_state_dict(state, strict=True)
    assert torch.equal(state["features.conv2.weight"][5], torch.zeros_like(state["features.conv2.weight"][5]))


def test_torchscript_keeps_the_masks_where_the_weights_alone_leak(run_cli, tmp_path):
    # sigmoid(0) = 0.5: zeroed filters still send 0.5 downstream unless masked
    arch = convnet_arch(activation="sigmoid", batchnorm=False)
    src = save_pruned(tmp_path / "sig.pt", arch, CONVNET_DROPS)
    ckpt = checkpoint.load(src)
    model = model_of(ckpt).eval()
    masked = _masked(model, {k: torch.tensor(v) for k, v in CONVNET_DROPS.items()})
    x = probe_for(arch)
    doc = export_json(run_cli, src, "-o", tmp_path / "m.ts")
    loaded = torch.jit.load(str(tmp_path / "m.ts"))
    with torch.no_grad():
        assert torch.allclose(loaded(x), masked(x), atol=1e-5)
        assert (model(x) - masked(x)).abs().max() > 1e-3
    assert doc["verified"]["max_abs_diff"] <= 1e-4
    # the state-dict formats report the leak and say what to do
    result = run_cli("export", src, "-o", tmp_path / "m.safetensors", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["masked_max_abs_diff"] > 1e-3
    assert "leak through an activation with f(0) != 0" in result.stderr


def test_pt2_is_the_masked_sub_network_with_a_dynamic_batch(run_cli, tmp_path):
    # sigmoid(0) = 0.5: only a file that keeps the masks matches the sub-network
    arch = convnet_arch(activation="sigmoid", batchnorm=False)
    src = save_pruned(tmp_path / "sig.pt", arch, CONVNET_DROPS)
    model = model_of(checkpoint.load(src)).eval()
    masked = _masked(model, {k: torch.tensor(v) for k, v in CONVNET_DROPS.items()})
    result = run_cli("export", src, "-o", tmp_path / "m.pt2", "--json")  # the suffix picks the format
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert result.stderr.splitlines()[0].startswith("Wrote ") and len(result.stderr.splitlines()) == 1  # no noise
    assert doc["format"] == "pt2" and doc["verified"]["against"] == "outputs"
    assert doc["verified"]["max_abs_diff"] <= 1e-4
    loaded = torch.export.load(str(tmp_path / "m.pt2")).module()
    for rows in (1, 3):  # neither is the probe's batch size
        x = torch.randn(rows, 1, 8, 8)
        with torch.no_grad():
            assert torch.allclose(loaded(x), masked(x), atol=1e-5)
            assert (model(x) - masked(x)).abs().max() > 1e-3


def test_pt2_compact(run_cli, pruned, tmp_path):
    doc = export_json(run_cli, pruned, "-o", tmp_path / "small.pt2", "--compact")
    assert doc["format"] == "pt2" and doc["after"]["params"] < doc["before"]["params"]
    assert doc["verified"]["max_abs_diff"] <= 1e-4
    result = run_cli("score", tmp_path / "small.pt2")  # not a checkpoint: say so, and what to give instead
    assert result.exit_code == 3 and "a torch.export program (.pt2" in result.stderr
    program = torch.export.load(str(tmp_path / "small.pt2"))
    assert program.state_dict["features.conv2.weight"].shape[0] == 8 - 3
    model = model_of(checkpoint.load(pruned)).eval()
    masked = _masked(model, {k: torch.tensor(v) for k, v in CONVNET_DROPS.items()})
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(program.module()(x), masked(x), atol=1e-4)


def test_torchscript_says_it_is_for_older_runtimes_and_pt2_refuses_a_torchscript_source(run_cli, pruned, tmp_path):
    result = run_cli("export", pruned, "-o", tmp_path / "m.ts")
    assert result.exit_code == 0, result.stderr
    assert "For PyTorch 2.x use --format pt2" in result.stderr
    assert "Warning: `torch.jit" not in result.stderr and "DeprecationWarning" not in result.stderr
    result = run_cli("export", tmp_path / "m.ts", "-o", tmp_path / "m.pt2")
    assert result.exit_code == 4
    assert "pt2 export needs a Python model" in result.stderr
    assert not (tmp_path / "m.pt2").exists()


def onnx_runtime():
    """onnxruntime; the test skips without the onnx extra, except in CI, which installs it (.ci/run)."""
    if os.environ.get("CI"):  # a missing extra fails the CI run
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401

        return onnxruntime
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    return pytest.importorskip("onnxruntime")


def test_onnx_round_trip(run_cli, pruned, tmp_path):
    ort = onnx_runtime()
    out = tmp_path / "model.onnx"
    doc = export_json(run_cli, pruned, "-o", out, "--compact")
    assert doc["verified"]["max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model = model_of(checkpoint.load(pruned)).eval()
    masked = _masked(model, {k: torch.tensor(v) for k, v in CONVNET_DROPS.items()})
    x = torch.randn(3, 1, 8, 8)  # another batch size than the probe's
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert torch.allclose(torch.from_numpy(got), masked(x).detach(), atol=1e-4)


def test_onnx_missing_is_a_usage_error(run_cli, pruned, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("onnx", "onnxscript") else real(name, *a)
    )
    result = run_cli("export", pruned, "-o", tmp_path / "m.onnx")
    assert result.exit_code == 2
    assert "pip install 'orthocli[onnx]'" in result.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_bare_state_dict_exports_to_safetensors_verified_by_tensors(run_cli, tmp_path):
    src = tmp_path / "bare.pt"
    torch.save(trained_like(convnet_arch()).state_dict(), src)
    doc = export_json(run_cli, src, "-o", tmp_path / "bare.safetensors")
    assert doc["verified"] == {"max_abs_diff": 0.0, "tolerance": 1e-4, "against": "tensors", "probe_shape": None}


# --- compaction ---------------------------------------------------------------------------------


def convnet_params(widths: list[int], cin: int, kernel: int, bn: bool, spatial: int, classes: int) -> int:
    """Parameters of a ConvNet with these conv widths, counted from the layer shapes."""
    total, prev = 0, cin
    for w in widths:
        total += prev * w * kernel + w + (2 * w if bn else 0)
        prev = w
    return total + prev * spatial * classes + classes


CASES = {
    # name: (arch, drops, expected parameters removed)
    "convnet-bn": (
        convnet_arch(),
        CONVNET_DROPS,
        convnet_params([8, 8, 8], 1, 9, True, 1, 10) - convnet_params([6, 5, 7], 1, 9, True, 1, 10),
    ),
    "convnet-sigmoid-no-bn": (
        convnet_arch(activation="sigmoid", batchnorm=False),
        CONVNET_DROPS,
        convnet_params([8, 8, 8], 1, 9, False, 1, 10) - convnet_params([6, 5, 7], 1, 9, False, 1, 10),
    ),
    "convnet-conv1d": (  # 16 -> 8 -> 4 -> 2: each conv3 channel is a block of 2 classifier inputs
        convnet_arch(input_shape=[16]),
        {"features.conv2": [1], "features.conv3": [0, 4, 6]},
        convnet_params([8, 8, 8], 1, 3, True, 2, 10) - convnet_params([8, 7, 5], 1, 3, True, 2, 10),
    ),
    # inner conv1 of each block: d * (cin*9 [conv1] + 2 [bn1] + cout*9 [conv2 input]); see test below
    "resnet20": (RESNET_ARCH, "all-one", 1422),
    "user": (
        USER_ARCH,
        {"c1": [0, 2], "c2": [5]},
        # c1: 2*(9+1) + bn 2*2 + c2 inputs 2*6*9; c2: 1*(4*9+1) + fc block 36*4
        2 * 10 + 4 + 2 * 6 * 9 + (4 * 9 + 1) + 36 * 4,
    ),
}


def _drops_for(arch, drops):
    if drops == "all-one":
        return {b.name: [0] for b in banks_from_model(build_model(arch))}
    return drops


@pytest.mark.parametrize("case", list(CASES))
def test_compact_equals_masked_and_removes_exactly_the_dropped_parameters(case):
    arch, drops, removed = CASES[case]
    drops = _drops_for(arch, drops)
    model = trained_like(arch)
    prune(model, drops)
    dropped = {k: torch.tensor(v) for k, v in drops.items()}
    small, report = compacted(model, dropped)
    x = probe_for(arch)
    with torch.no_grad():
        assert (small.eval()(x) - _masked(model, dropped)(x)).abs().max() <= 1e-5
    assert param_count(model) - param_count(small) == removed
    # the compact model rebuilds from the architecture plus its widths
    rebuilt = build_model({**arch, "widths": report.widths})
    rebuilt.load_state_dict(small.state_dict(), strict=True)


def test_resnet20_compacts_inner_convs_and_keeps_residual_ones():
    drops = _drops_for(RESNET_ARCH, "all-one")
    model = trained_like(RESNET_ARCH)
    prune(model, drops)
    _, report = compacted(model, {k: torch.tensor(v) for k, v in drops.items()})
    inner = {f"layer{s}.{b}.conv1" for s in (1, 2, 3) for b in range(3)}
    assert set(report.layers) == inner
    assert set(report.kept_width) == {"conv1"} | {n.replace("conv1", "conv2") for n in inner}
    assert "residual add" in report.kept_width["layer1.0.conv2"]


def test_compact_refuses_a_kept_width_layer_that_leaks(run_cli, tmp_path):
    # c1 feeds a residual add (kept at full width) through sigmoid: sigmoid(0) != 0 leaks
    src = save_pruned(tmp_path / "r.pt", SIGRES_ARCH, {"c1": [0], "c2": [1]})
    result = run_cli("export", src, "-o", tmp_path / "r.safetensors", "--compact")
    assert result.exit_code == 4
    assert (
        "differs from the masked sub-network" in result.stderr
        and "c1: its channels meet another tensor at 'add'" in result.stderr
    )
    assert not (tmp_path / "r.safetensors").exists()


def test_compact_removes_a_channel_with_the_depthwise_filter_that_reads_it(run_cli, tmp_path):
    src = save_pruned(tmp_path / "dw.pt", DW_ARCH, {"c1": [1]})
    doc = export_json(run_cli, src, "-o", tmp_path / "dw.pt2", "--format", "pt", "--compact")
    assert doc["compaction"]["layers"] == [{"name": "c1", "filters": 4, "kept": 3, "patterns": ["depthwise"]}]
    small = torch.load(tmp_path / "dw.pt2", weights_only=True)
    assert small["dw.weight"].shape == (3, 1, 3, 3) and small["fc.weight"].shape == (3, 3 * 6 * 6)
    assert doc["verified"]["max_abs_diff"] <= 1e-5


def test_compact_orthocli_checkpoint_rebuilds_scores_and_retrains(run_cli, pruned, tmp_path):
    out = tmp_path / "small.pt"
    doc = export_json(run_cli, pruned, "-o", out, "--compact", "--format", "orthocli")
    assert set(doc) == {
        "checkpoint",
        "format",
        "output",
        "compact",
        "verified",
        "dropped_filters",
        "masked_max_abs_diff",
        "before",
        "after",
        "compaction",
    }
    assert doc["before"]["params"] - doc["after"]["params"] == CASES["convnet-bn"][2]
    assert doc["after"]["bytes"] == out.stat().st_size < doc["before"]["bytes"]
    assert doc["after"]["ms"] > 0 and doc["before"]["ms"] > 0
    ckpt = checkpoint.load(out)
    assert ckpt.extras["arch"]["widths"] == {"features.conv1": 6, "features.conv2": 5, "features.conv3": 7}
    assert "prune" not in ckpt.extras and ckpt.extras["data"]["mean"] == [0.5]
    scored = run_cli("score", out, "--json")
    assert scored.exit_code == 0, scored.stderr
    assert [layer["filters"] for layer in json.loads(scored.stdout)["layers"]] == [6, 5, 7]
    # retrain: the rebuilt compact model trains, and can be traced for the next prune
    model = model_of(ckpt).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    torch.manual_seed(0)
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 10, (32,))
    losses = []
    for _ in range(5):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert [b.name for b in banks_from_model(model)] == ["features.conv1", "features.conv2", "features.conv3"]
    # and through `orthocli train`, RePr cycles included, keeping its compact widths
    res = run_cli(
        "train",
        out,
        *ONE_CYCLE,
        "--max-samples",
        "200",
        "--threads",
        "1",
        "-o",
        tmp_path / "retrained.pt",
        "--json",
    )
    assert res.exit_code == 0, res.stderr
    retrained = checkpoint.load(tmp_path / "retrained.pt")
    assert retrained.extras["arch"]["widths"] == {"features.conv1": 6, "features.conv2": 5, "features.conv3": 7}
    assert [layer.filters for layer in checkpoint_convs(retrained)] == [6, 5, 7]


def test_compact_safetensors_and_torchscript(run_cli, pruned, tmp_path):
    export_json(run_cli, pruned, "-o", tmp_path / "small.safetensors", "--compact")
    scored = run_cli("score", tmp_path / "small.safetensors", "--json")
    assert scored.exit_code == 0
    assert [layer["filters"] for layer in json.loads(scored.stdout)["layers"]] == [6, 5, 7]
    doc = export_json(run_cli, pruned, "-o", tmp_path / "small.ts", "--compact")
    assert doc["after"]["params"] < doc["before"]["params"]
    assert doc["verified"]["max_abs_diff"] <= 1e-4


def test_user_architecture_through_the_cli(run_cli, tmp_path):
    src = save_pruned(tmp_path / "user.pt", USER_ARCH, {"c1": [0, 2], "c2": [5]})
    doc = export_json(run_cli, src, "-o", tmp_path / "user.safetensors", "--compact")
    assert doc["before"]["params"] - doc["after"]["params"] == CASES["user"][2]
    assert {layer["name"]: layer["kept"] for layer in doc["compaction"]["layers"]} == {"c1": 4, "c2": 5}


def test_trusted_whole_model_to_torchscript_needs_an_input_shape(run_cli, tmp_path):
    model = trained_like(USER_ARCH)
    torch.save(model, tmp_path / "whole.pt")
    result = run_cli("export", tmp_path / "whole.pt", "-o", tmp_path / "m.ts", "--trust")
    assert result.exit_code == 2
    assert "give --input-shape" in result.stderr
    doc = export_json(run_cli, tmp_path / "whole.pt", "-o", tmp_path / "m.ts", "--trust", "--input-shape", "1,6,6")
    assert doc["verified"]["against"] == "outputs" and doc["after"]["params"] == param_count(model)
    x = torch.randn(2, 1, 6, 6)
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(tmp_path / "m.ts"))(x), model(x), atol=1e-5)


# --- refusals -----------------------------------------------------------------------------------


def test_bare_state_dict_to_torchscript_is_refused(run_cli, tmp_path):
    src = tmp_path / "bare.pt"
    torch.save(trained_like(convnet_arch()).state_dict(), src)
    result = run_cli("export", src, "-o", tmp_path / "m.ts")
    assert result.exit_code == 4
    assert "torchscript export needs the model architecture" in result.stderr
    result = run_cli("export", src, "-o", tmp_path / "m.safetensors", "--compact")
    assert result.exit_code == 4
    assert "--compact needs the model architecture" in result.stderr


def test_compact_without_drop_record_is_refused(run_cli, tmp_path):
    src = tmp_path / "plain.pt"
    checkpoint.save(src, checkpoint.make_payload(trained_like(convnet_arch()).state_dict(), arch=convnet_arch()))
    result = run_cli("export", src, "-o", tmp_path / "m.pt", "--compact")
    assert result.exit_code == 4
    assert "drops no filters" in result.stderr


def test_output_rules(run_cli, pruned, tmp_path):
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"keep me")
    result = run_cli("export", pruned, "-o", out)
    assert result.exit_code == 5
    assert "already exists; use --force" in result.stderr
    assert out.read_bytes() == b"keep me"
    assert run_cli("export", pruned, "-o", out, "--force").exit_code == 0
    result = run_cli("export", pruned, "-o", pruned, "--format", "orthocli", "--force")
    assert result.exit_code == 5
    assert "is the input file" in result.stderr
    result = run_cli("export", pruned, "-o", tmp_path / "m.weights")
    assert result.exit_code == 2
    assert "cannot tell the format" in result.stderr


def test_failed_verification_leaves_no_file(run_cli, pruned, tmp_path, monkeypatch):
    import orthocli.export as ex

    real = ex._load_back

    def corrupt(fmt, path):
        runnable, state, meta = real(fmt, path)
        state["classifier.bias"] += 1.0
        return runnable, state, meta

    monkeypatch.setattr(ex, "_load_back", corrupt)
    result = run_cli("export", pruned, "-o", tmp_path / "m.safetensors")
    assert result.exit_code == 4
    assert "verification failed" in result.stderr and "nothing was written" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned.pt"]


def test_export_help_does_not_import_torch():
    code = (
        "import sys; from orthocli.cli import app; from typer.testing import CliRunner; "
        "r = CliRunner().invoke(app, ['export', '--help']); assert r.exit_code == 0, r.output; "
        "assert '--compact' in r.output; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
