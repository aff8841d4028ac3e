"""The public API's surface and plain functions: `import orthocli` loads no torch until used;
score, plan_drops, drop and reinitialize on a user's own model."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from train_helpers import make_model

import orthocli
from orthocli import drop, plan_drops, reinitialize, score
from orthocli.method.orthogonality import orthogonality_scores

pytestmark = pytest.mark.usefixtures("one_thread")


# --- the package surface ---------------------------------------------------------------------


def test_import_orthocli_loads_no_torch_until_the_api_is_used():
    code = (
        "import sys, orthocli; assert 'torch' not in sys.modules, 'torch at import';"
        "[getattr(orthocli, n) for n in orthocli.__all__ if n != 'ReprCallback'];"
        "assert 'torch' in sys.modules and 'lightning' not in sys.modules; print('ok')"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        orthocli.nothing  # noqa: B018


# --- plain functions ---------------------------------------------------------------------------


def test_score_a_module_and_its_state_dict():
    model = make_model()
    by_module, by_state = score(model), score(model.state_dict())
    assert list(by_module) == ["features.conv1", "features.conv2", "features.conv3"] == list(by_state)
    for name, s in by_module.items():
        assert torch.equal(s, orthogonality_scores(model.get_submodule(name).weight.detach()))
        assert torch.equal(s, by_state[name])


def test_plan_drop_and_reinitialize_in_place():
    model = make_model()
    params = {n: p for n, p in model.named_parameters()}
    plan = plan_drops(model, ratio=0.25)
    assert set(plan.drops) == {"features.conv2", "features.conv3"}  # the first conv is skipped
    assert all(len(idx) == 2 for idx in plan.drops.values())
    record = drop(model, plan)
    for name, idx in plan.drops.items():
        assert (model.get_submodule(name).weight[idx] == 0).all()
        bn = model.get_submodule(name.replace("conv", "bn"))
        assert (bn.weight[idx] == 0).all() and (bn.bias[idx] == 0).all()
    report = reinitialize(model, record, generator=torch.Generator().manual_seed(3))
    assert {n: r["null_space"] for n, r in report.items()} == {"features.conv2": 2, "features.conv3": 2}
    for name, idx in plan.drops.items():
        w = model.get_submodule(name).weight.detach().flatten(1).double()
        keep = torch.ones(len(w), dtype=torch.bool)
        keep[idx] = False
        old = next(c["old"] for c in record["layers"][name]["channels"] if c["role"] == "conv_weight").flatten(1)
        assert (w[idx] @ w[keep].T).abs().max() < 1e-4 * w.norm() ** 2  # orthogonal to every kept filter
        assert (w[idx] @ old.double().T).diagonal().abs().max() < 1e-4 * w.norm() ** 2  # and to its old value
    assert {n: p for n, p in model.named_parameters()} == params  # the same Parameter objects
