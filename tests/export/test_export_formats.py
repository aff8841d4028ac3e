"""`orthocli export`: a round trip per format, each verified against the masked sub-network."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
import torch
from export_helpers import (
    CONVNET_DROPS,
    USER_ARCH,
    convnet_arch,
    probe_for,
    save_pruned,
    trained_like,
)

import orthocli.checkpoints.checkpoint as checkpoint
from orthocli.checkpoints.model import CheckpointModel
from orthocli.method.masking import masked_model
from orthocli.network.compact import param_count
from orthocli.network.models import ConvNet

# the tests load TorchScript files themselves; torch 2.9+ marks torch.jit.load deprecated
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


def test_safetensors_loads_strict_into_model_class_with_extras_in_metadata(cli_json, pruned, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    out = tmp_path / "model.safetensors"
    doc = cli_json("export", pruned, "-o", out)
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


def test_pt_is_a_plain_state_dict(cli_json, pruned, tmp_path):
    out = tmp_path / "model.pt"
    cli_json("export", pruned, "-o", out)
    state = torch.load(out, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    model = ConvNet(**convnet_arch()["args"])
    model.load_state_dict(state, strict=True)
    assert torch.equal(state["features.conv2.weight"][5], torch.zeros_like(state["features.conv2.weight"][5]))


def test_torchscript_keeps_the_masks_where_the_weights_alone_leak(run_cli, cli_json, tmp_path):
    # sigmoid(0) = 0.5: zeroed filters still send 0.5 downstream unless masked
    arch = convnet_arch(activation="sigmoid", batchnorm=False)
    src = save_pruned(tmp_path / "sig.pt", arch, CONVNET_DROPS)
    ckpt = checkpoint.load(src)
    model = CheckpointModel(ckpt).model.eval()
    masked = masked_model(model, {k: torch.tensor(v) for k, v in CONVNET_DROPS.items()})
    x = probe_for(arch)
    doc = cli_json("export", src, "-o", tmp_path / "m.ts")
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
    model = CheckpointModel(checkpoint.load(src)).model.eval()
    masked = masked_model(model, {k: torch.tensor(v) for k, v in CONVNET_DROPS.items()})
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


def test_pt2_compact(run_cli, cli_json, pruned, tmp_path):
    doc = cli_json("export", pruned, "-o", tmp_path / "small.pt2", "--compact")
    assert doc["format"] == "pt2" and doc["after"]["params"] < doc["before"]["params"]
    assert doc["verified"]["max_abs_diff"] <= 1e-4
    result = run_cli("score", tmp_path / "small.pt2")  # not a checkpoint: say so, and what to give instead
    assert result.exit_code == 3 and "a torch.export program (.pt2" in result.stderr
    program = torch.export.load(str(tmp_path / "small.pt2"))
    assert program.state_dict["features.conv2.weight"].shape[0] == 8 - 3
    model = CheckpointModel(checkpoint.load(pruned)).model.eval()
    masked = masked_model(model, {k: torch.tensor(v) for k, v in CONVNET_DROPS.items()})
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(program.module()(x), masked(x), atol=1e-4)


def test_torchscript_says_it_is_for_older_runtimes_and_pt2_refuses_a_torchscript_source(run_cli, pruned, tmp_path):
    result = run_cli("export", pruned, "-o", tmp_path / "m.ts")
    assert result.exit_code == 0, result.stderr
    assert "For PyTorch 2.x use --format pt2" in result.stderr
    assert "Warning: `torch.jit" not in result.stderr and "DeprecationWarning" not in result.stderr
    result = run_cli("export", tmp_path / "m.ts", "-o", tmp_path / "m.pt2")
    assert result.exit_code == 6  # a TorchScript source runs code: refused before anything without --trust
    result = run_cli("export", tmp_path / "m.ts", "-o", tmp_path / "m.pt2", "--trust")
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


def test_onnx_round_trip(cli_json, pruned, tmp_path):
    ort = onnx_runtime()
    out = tmp_path / "model.onnx"
    doc = cli_json("export", pruned, "-o", out, "--compact")
    assert doc["verified"]["max_abs_diff"] <= 1e-4
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model = CheckpointModel(checkpoint.load(pruned)).model.eval()
    masked = masked_model(model, {k: torch.tensor(v) for k, v in CONVNET_DROPS.items()})
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


def test_bare_state_dict_exports_to_safetensors_verified_by_tensors(cli_json, tmp_path):
    src = tmp_path / "bare.pt"
    torch.save(trained_like(convnet_arch()).state_dict(), src)
    doc = cli_json("export", src, "-o", tmp_path / "bare.safetensors")
    assert doc["verified"] == {"max_abs_diff": 0.0, "tolerance": 1e-4, "against": "tensors", "probe_shape": None}


def test_trusted_whole_model_to_torchscript_needs_an_input_shape(run_cli, cli_json, tmp_path):
    model = trained_like(USER_ARCH)
    torch.save(model, tmp_path / "whole.pt")
    result = run_cli("export", tmp_path / "whole.pt", "-o", tmp_path / "m.ts", "--trust")
    assert result.exit_code == 2
    assert "give --input-shape" in result.stderr
    doc = cli_json("export", tmp_path / "whole.pt", "-o", tmp_path / "m.ts", "--trust", "--input-shape", "1,6,6")
    assert doc["verified"]["against"] == "outputs" and doc["after"]["params"] == param_count(model)
    x = torch.randn(2, 1, 6, 6)
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(tmp_path / "m.ts"))(x), model(x), atol=1e-5)
