"""torchvision's classification families, end to end through the library: scores, a drop with
every reader of a dropped channel reading exactly zero, dropped tensors frozen through SGD and
AdamW, re-introduction that keeps the output wherever it says it does, and `export --compact`'s
model equal to the masked sub-network, no larger than Torch-Pruning's for the same channels.

Each family is built small (tests/zoo_models.py). Without torchvision the tests skip, except
under CI=1 (the test extra installs it)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from zoo_models import FAMILIES, build

from orthocli import SubNetwork, drop, plan_drops, reinitialize, score
from orthocli.method.masking import masked_model as _masked
from orthocli.network.banks import banks_from_model
from orthocli.network.channel_readers import Blocked, module_width, readers
from orthocli.network.compact import compacted, param_count
from orthocli.network.graph import ModelGraph

pytestmark = pytest.mark.usefixtures("one_thread")

# Where no comparison with Torch-Pruning is made: it fails on ShuffleNet's channel shuffle (1.6.0),
# and orthocli compacts no layer of these small ResNeXt, RegNetX and ConvNeXt (grouped readers,
# residual adds: they keep their width, which the report says) while Torch-Pruning's models differ
# from the masked one.
NOT_COMPARED = {"shufflenet_v2", "resnext", "regnet_x", "convnext"}


def _indices(layer: dict, ch: dict) -> torch.Tensor:
    return layer["dropped"] + ch.get("offset", 0)


def _frozen(model: nn.Module, record: dict) -> dict:
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    return {
        (name, ch["key"]): tensors[ch["key"]].detach().index_select(ch["dim"], _indices(layer, ch)).clone()
        for name, layer in record["layers"].items()
        for ch in layer["channels"]
    }


def _steps(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, n: int = 2) -> None:
    model.train()
    y = torch.arange(len(x)) % 10
    for _ in range(n):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # batch-2 BatchNorm on 1x1 maps: huge gradients
        optimizer.step()
    model.eval()


def _reader_inputs_zero(model: nn.Module, record: dict, x: torch.Tensor) -> list[str]:
    """Every module the walk finds reading a dropped channel (a conv, a Linear, a BatchNorm after
    a concatenation), hooked: the names of those whose input is not exactly zero there."""
    graph = ModelGraph.trace(model)
    banks = {b.name: b for b in banks_from_model(graph)}
    bad, handles = [], []

    def check(name, reader, idx):
        def hook(module, args):
            t = args[0]
            if reader.kind == "linear_flat":
                block = t.shape[1] // reader.width
                cols = ((idx + reader.offset)[:, None] * block + torch.arange(block)).flatten()
                values = t[:, cols]
            else:
                values = t[:, idx + reader.offset]
            if values.abs().max() > 0:
                bad.append(f"{name} -> {reader.target}: {values.abs().max():.3g}")

        return hook

    for name, layer in record["layers"].items():
        try:
            found, _ = readers(graph, banks[name], banks, module_width(graph))
        except Blocked:
            continue  # a residual add or the like: the output check below covers it
        for r in found:
            hook = check(name, r, layer["dropped"])
            handles.append(model.get_submodule(r.target).register_forward_pre_hook(hook))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return bad


def _torch_pruning(model: nn.Module, x: torch.Tensor, dropped: dict[str, torch.Tensor]) -> nn.Module | None:
    """Torch-Pruning's DependencyGraph pruning the same filters (None where it cannot)."""
    tp = pytest.importorskip("torch_pruning")
    model = copy.deepcopy(model)
    try:
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=x)
        for name, idx in dropped.items():
            group = graph.get_pruning_group(model.get_submodule(name), tp.prune_conv_out_channels, idxs=idx.tolist())
            if not graph.check_pruning_group(group):
                return None
            group.prune()
        with torch.no_grad():
            model.eval()(x)
    except Exception:  # its tracer or a handler gives up on this model, or leaves it broken (a depthwise conv's groups)
        return None
    return model


def _sub_record(record: dict, names) -> dict:
    return {**record, "layers": {n: record["layers"][n] for n in names}}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_torchvision_family_is_exact_end_to_end(family):
    model, x = build(family)
    scores = score(model)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)]
    assert list(scores) == convs and all(torch.isfinite(s).all() for s in scores.values())

    plan = plan_drops(model, ratio=0.25)
    assert plan.drops, "the rule dropped nothing"
    pristine = copy.deepcopy(model)
    record = drop(model, plan)
    dropped = {n: layer["dropped"] for n, layer in record["layers"].items()}

    # compaction equals the masked sub-network, and removes no fewer parameters than Torch-Pruning
    masked = _masked(model, dropped)
    small, report = compacted(model, dropped, x)
    with torch.no_grad():
        want = masked(x)
        diff = (small.eval()(x) - want).abs().max()
    assert diff <= 1e-5 * max(1.0, float(want.abs().max())), f"compact vs masked: {diff}"
    assert all(isinstance(r, str) and r for r in report.kept_width.values())
    assert set(report.layers) | set(report.kept_width) == set(dropped)
    # Torch-Pruning for the same channels, where its result is exact: all of them, else those orthocli compacts
    compared = False
    for drops in (dropped, {n: dropped[n] for n in report.layers}):
        ours = small if drops is dropped else compacted(model, drops, x)[0]
        theirs = _torch_pruning(model, x, drops) if drops else None
        if theirs is not None:
            with torch.no_grad():
                want = _masked(model, drops)(x)
                exact = (theirs(x) - want).abs().max() <= 1e-5 * max(1.0, float(want.abs().max()))
            if exact:
                assert param_count(ours) <= param_count(theirs), (param_count(ours), param_count(theirs))
                compared = True
                break
    assert compared or family in NOT_COMPARED
    assert param_count(small) < param_count(pristine) or not report.layers

    # the sub-network: every reader of a dropped channel reads zero; what the filters compute is not seen
    sgd = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    sub = SubNetwork(model, sgd, record)
    assert _reader_inputs_zero(model, record, x) == []
    frozen = _frozen(model, record)
    _steps(model, sgd, x)
    sub.remove()
    adamw = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    sub = SubNetwork(model, adamw, record)
    _steps(model, adamw, x)
    after = _frozen(model, record)
    moved = [k for k in frozen if not torch.equal(frozen[k], after[k])]
    assert moved == [], f"dropped tensors moved: {moved[:5]}"
    assert _reader_inputs_zero(model, record, x) == []

    # re-introduction: where the report says zeroed or silenced, the output is unchanged
    with torch.no_grad():
        before = model(x)
    assert torch.isfinite(before).all()
    sub.remove()
    trial = copy.deepcopy(model)
    statuses = reinitialize(trial, copy.deepcopy(record))
    kept = [n for n, r in statuses.items() if r["fan_out"] in ("zeroed", "silenced")]
    unknown = [n for n, r in statuses.items() if r["fan_out"] == "unknown"]
    assert set(kept) | set(unknown) == set(record["layers"])
    for name in unknown:
        note = statuses[name]["fan_out_note"]
        # what the user can do, in the library's terms (docs/api.md), not the command line's
        assert note and "exclude" in note and "--" not in note, (name, note)
    rest = SubNetwork(model, adamw, _sub_record(record, unknown), hooks=False) if unknown else None
    report = reinitialize(model, _sub_record(record, kept))
    with torch.no_grad():
        after_reinit = model(x)
    if rest is not None:
        rest.remove()
    diff = (after_reinit - before).abs().max()
    assert diff <= 1e-5 * max(1.0, float(before.abs().max())), f"output moved by {diff} at re-introduction"
    for name in kept:  # the new filters are orthogonal to the kept ones (where the null space had room)
        conv = model.get_submodule(name)
        if conv.groups == 1 and report[name]["null_space"] == report[name]["dropped"]:
            w = F.normalize(conv.weight.flatten(1), dim=1)
            new = torch.zeros(len(w), dtype=torch.bool)
            new[record["layers"][name]["dropped"]] = True
            assert (w[new] @ w[~new].T).abs().max() < 1e-4, name


def _reads(model: nn.Module, target: str, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = model.get_submodule(target).register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[0]


def test_a_hard_sigmoid_gate_of_a_dropped_filter_is_closed():
    # MobileNetV3's squeeze-excite: fc2 -> Hardsigmoid -> x * gate; hardsigmoid(0) = 0.5, not 0
    model, x = build("mobilenet_v3")
    block = "features.1.block"
    record = drop(model, {f"{block}.1.fc2": torch.tensor([0, 3])})
    SubNetwork(model, torch.optim.SGD(model.parameters(), lr=0.1), record)
    assert _reads(model, f"{block}.2.0", x)[:, [0, 3]].abs().max() == 0  # the projection reads 0
    assert _reads(model, f"{block}.2.0", x)[:, [1, 2]].abs().max() > 0


def test_an_expand_conv_before_a_squeeze_excite_block_keeps_the_output_at_reintroduction():
    # expand -> BN -> act -> depthwise -> BN -> act -> SE -> project: reported "silenced" before,
    # while the depthwise BatchNorm, restored, turned the zero into non-zero
    model, x = build("efficientnet")
    layer = "features.2.0.block.0.0"
    record = drop(model, {layer: torch.tensor([1, 5, 7])})
    with torch.no_grad():
        before = model(x)
        report = reinitialize(model, record)
        after = model(x)
    assert report[layer]["fan_out"] == "zeroed"
    assert (after - before).abs().max() <= 1e-6
    small, compact = compacted(build("efficientnet")[0], {layer: torch.tensor([1, 5, 7])}, x)
    assert compact.layers[layer]["patterns"] == ["depthwise", "gate"]
    assert small.get_submodule("features.2.0.block.2.fc2").out_channels == 48 - 3  # the gate loses them too


def test_a_batchnorm_after_a_concatenation_reads_zero_for_a_dropped_channel():
    # DenseNet: each layer reads norm1(cat(features so far)); BN(0) = beta - gamma * mean / std
    model, x = build("densenet")
    layer = "features.denseblock1.denselayer1.conv2"
    record = drop(model, {layer: torch.tensor([2, 6])})
    roles = {(ch["key"], ch["role"], ch.get("offset", 0)) for ch in record["layers"][layer]["channels"]}
    # the layer's 8 channels follow the 16 of the stem in what the next layer's norm1 reads
    assert ("features.denseblock1.denselayer2.norm1.weight", "rd_bn_weight", 16) in roles
    SubNetwork(model, torch.optim.SGD(model.parameters(), lr=0.1), record)
    for reader in ("features.denseblock1.denselayer2.conv1", "features.transition1.conv"):
        assert _reads(model, reader, x)[:, [16 + 2, 16 + 6]].abs().max() == 0, reader
