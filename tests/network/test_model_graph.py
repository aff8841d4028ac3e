"""One graph per model: `graph.ModelGraph` traces a model once, and the controller, the plain
functions and export read that one graph (banks, the layers that keep every filter, mask points,
the masked copy, compaction)."""

from __future__ import annotations

import pytest
import torch
import torch.fx
from train_helpers import make_data, make_model, make_optimizer, run_epoch

from orthocli import RePr
from orthocli.network.banks import banks_from_model, masked_forward
from orthocli.network.compact import compacted
from orthocli.network.graph import ModelGraph

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def traces(monkeypatch):
    """The models torch.fx traces from here on."""
    seen = []
    real = torch.fx.symbolic_trace

    def counting(root, *args, **kwargs):
        seen.append(root)
        return real(root, *args, **kwargs)

    monkeypatch.setattr(torch.fx, "symbolic_trace", counting)
    return seen


def test_a_repr_run_traces_its_model_once(traces):
    model = make_model()
    data = make_data()
    ctrl = RePr(model, make_optimizer(model), s1=1, s2=1, cycles=3, ratio=0.25)
    for _ in range(7):
        run_epoch(model, ctrl.optimizer, data)
        ctrl.epoch_end()
    assert [c.cycle for c in ctrl.cycles] == [1, 2, 3] and all(c.dropped for c in ctrl.cycles)
    assert traces == [model]


def test_a_graph_answers_every_question_from_one_trace(traces):
    model = make_model()
    graph = ModelGraph.trace(model)
    banks = banks_from_model(graph)
    assert banks_from_model(graph) is banks  # cached on the graph
    assert graph.fixed_layers() == {}  # ConvNet: every conv feeds another conv or the Linear
    net, masks = masked_forward(graph, banks)
    small, report = compacted(graph, {"features.conv2": torch.tensor([0, 3])}, torch.zeros(2, 1, 8, 8))
    assert report.widths == {"features.conv2": 6} and small is not model
    assert model.features.conv2.weight.shape[0] == 8  # the original is left as it was
    x = torch.randn(3, 1, 8, 8)
    model.eval(), net.eval()
    assert torch.equal(net(x), model(x))  # all masks 1: the masked copy computes what the model does
    assert traces == [model]
