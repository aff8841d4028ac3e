"""orthocli.RePr's state_dict: an exact resume into a fresh model, masks and freezing restored,
and a state of other options refused."""

from __future__ import annotations

import io

import pytest
import torch
from train_helpers import clone_state, frozen_values, make_data, make_model, make_optimizer, run_epoch

from orthocli import RePr
from orthocli.errors import CheckpointError, UsageError

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(epochs: range, model, optimizer, ctrl, data) -> None:
    for _ in epochs:
        run_epoch(model, optimizer, data)
        ctrl.epoch_end()


@pytest.mark.parametrize("stop_after", [1, 3])  # mid-S1, mid-S2
def test_resume_into_a_fresh_model_continues_exactly(stop_after):
    options = dict(s1=2, s2=2, cycles=2, ratio=0.4, seed=7)
    data = make_data()
    full = make_model()
    full_opt = make_optimizer(full, "adam")
    full_ctrl = RePr(full, full_opt, **options)
    _run(range(9), full, full_opt, full_ctrl, data)

    model = make_model()
    optimizer = make_optimizer(model, "adam")
    ctrl = RePr(model, optimizer, **options)
    _run(range(stop_after), model, optimizer, ctrl, data)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "repr": ctrl.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)

    model = make_model(seed=99)  # fresh weights, overwritten by the load
    optimizer = make_optimizer(model, "adam")
    ctrl = RePr(model, optimizer, **options)
    ctrl.load_state_dict(saved["repr"])  # before or after the model: either way
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    assert (ctrl.phase, ctrl.epoch) == ("standard" if stop_after < 2 else "subnet", stop_after)
    _run(range(stop_after, 9), model, optimizer, ctrl, data)
    assert all(torch.equal(v, full.state_dict()[k]) for k, v in model.state_dict().items())
    assert [c.dropped for c in ctrl.cycles] == [c.dropped for c in full_ctrl.cycles]


def test_resume_mid_sub_network_restores_masks_and_freezing():
    data = make_data()
    model = make_model()
    optimizer = make_optimizer(model)
    ctrl = RePr(model, optimizer, s1=1, s2=3, cycles=1, ratio=0.25)
    _run(range(2), model, optimizer, ctrl, data)
    saved = {"model": clone_state(model), "optimizer": optimizer.state_dict(), "repr": ctrl.state_dict()}
    fresh = make_model(seed=3)
    fresh_opt = make_optimizer(fresh)
    fresh.load_state_dict(saved["model"])
    fresh_opt.load_state_dict(saved["optimizer"])
    again = RePr(fresh, fresh_opt, s1=1, s2=3, cycles=1, ratio=0.25)
    again.load_state_dict(saved["repr"])
    assert again.phase == "subnet" and {n: m.tolist() for n, m in again.masks().items()} == {
        n: m.tolist() for n, m in ctrl.masks().items()
    }
    assert any(not m.all() for m in again.masks().values())
    frozen = frozen_values(fresh, again.record)
    run_epoch(fresh, fresh_opt, data)
    assert all(torch.equal(frozen_values(fresh, again.record)[k], v) for k, v in frozen.items())


def test_loading_a_state_of_other_options_or_another_kind_fails():
    model = make_model()
    ctrl = RePr(model, make_optimizer(model), s1=1, s2=1, cycles=1, ratio=0.25)
    other_model = make_model()
    other = RePr(other_model, make_optimizer(other_model), s1=2, s2=1, cycles=1, ratio=0.5)
    with pytest.raises(UsageError, match=r"differs in: ratio, s1"):
        other.load_state_dict(ctrl.state_dict())
    with pytest.raises(CheckpointError, match="not an orthocli RePr state"):
        ctrl.load_state_dict({"epoch": 3})
