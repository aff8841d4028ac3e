"""Devices and precision: what is refused where, and the CUDA paths where a GPU exists."""

from __future__ import annotations

import json

import pytest
import torch
from train_helpers import ONE_CYCLE

from orthocli.errors import UsageError
from orthocli.training.runtime import Runtime, resolve_device, resolve_precision

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_auto_and_cpu_resolve_here():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("fp32", torch.device("cpu")) == "fp32"


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "tpu"])
def test_unknown_devices_are_usage_errors(spec):
    with pytest.raises(UsageError, match="expected auto, cpu, cuda, cuda:N or mps"):
        resolve_device(spec)


@no_cuda
@pytest.mark.parametrize("spec", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_is_refused(spec):
    with pytest.raises(UsageError, match="CUDA is not available"):
        resolve_device(spec)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_needs_cuda(precision):
    with pytest.raises(UsageError, match="needs a CUDA device"):
        resolve_precision(precision, torch.device("cpu"))
    with pytest.raises(UsageError, match="expected one of"):
        resolve_precision("fp8", torch.device("cpu"))


def test_fp32_runtime_changes_nothing():
    rt = Runtime(torch.device("cpu"))
    assert rt.grad_scaler() is None and rt.is_main and not rt.distributed
    with rt.autocast():
        assert not torch.is_autocast_enabled("cpu")
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32
    # The same check sees autocast where there is some: bf16 on the CPU runs the matmul in bfloat16.
    with Runtime(torch.device("cpu"), precision="bf16").autocast():
        assert torch.is_autocast_enabled("cpu")
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.bfloat16


@no_cuda
def test_cli_refuses_cuda_here_before_writing_anything(run_cli, tmp_path):
    res = run_cli("train", "--cycles", "0", "--max-epochs", "1", "--device", "cuda", "-o", tmp_path / "m.pt")
    assert res.exit_code == 2 and "CUDA is not available" in res.stderr
    assert list(tmp_path.iterdir()) == []


@cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_cuda_training_with_amp_writes_a_cpu_loadable_checkpoint(run_cli, tmp_path, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    res = run_cli(
        "train",
        *ONE_CYCLE,
        "--width",
        "8",
        "--device",
        "cuda",
        "--precision",
        precision,
        "-o",
        tmp_path / "m.pt",
        "--json",
    )
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["runtime"]["device"].startswith("cuda") and doc["runtime"]["precision"] == precision
    saved = torch.load(tmp_path / "m.pt", weights_only=True)
    assert all(t.device.type == "cpu" for t in saved["state_dict"].values())
    assert doc["test_accuracy"] > 0.3
