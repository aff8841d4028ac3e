"""Sub-networks: dropping filters, keeping them frozen while the rest trains, and re-introducing
them orthogonally (the method's steps 3 "drop" and 4 "re-introduce"; docs/method.md). Works on
state dicts in place, so the same code serves a bare checkpoint (`orthocli prune`/`reinit`) and a
live model (`orthocli train`).

A drop record, saved in the checkpoint under extras["prune"], is plain data:
{"rule": {...}, "layers": {name: {"key", "groups", "transposed", "dropped": LongTensor,
 "channels": [{"key", "dim", "role", "old": Tensor}], "follow": [depthwise conv names]}}}
"old" holds each channel tensor's values for the dropped filters before dropping.

`SubNetwork` applies a record to a live model and its optimizer: masked, frozen, until removed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

import orthocli.network.fan_out as fanout
from orthocli.errors import CheckpointError, render_options
from orthocli.method.masking import ChannelMasks
from orthocli.method.nullspace import filter_scale, new_filters
from orthocli.method.orthogonality import filter_rows
from orthocli.network.banks import DROPPED_VALUE, FilterBank, banks_from_model, zero_dropped
from orthocli.network.graph import ModelGraph, method_graph, unwrap

# What a re-introduced filter starts from. A dropped one's tensors are set to `DROPPED_VALUE`
# (banks.py: zero weight and bias, so the filter is dead even where the model is loaded without
# orthocli's masks).


def channel_index(layer: dict, ch: dict) -> torch.Tensor:
    """The indices of a layer's dropped filters in the channel tensor `ch` (at its offset: a
    BatchNorm after a concatenation reads them further on)."""
    return layer["dropped"] + ch.get("offset", 0)


_FRESH_VALUE = {"conv_bias": 0.0, "bn_weight": 1.0, "bn_bias": 0.0, "bn_mean": 0.0, "bn_var": 1.0}


def make_record(
    state_dict: dict[str, torch.Tensor],
    banks: Iterable[FilterBank],
    drops: dict[str, torch.Tensor],
    rule: dict,
    graph: ModelGraph | None = None,
) -> dict:
    """The drop record for `drops` (bank name -> filter indices), with the values before dropping
    and, from the model's `graph` (None: unknown), what reads each channel (`fan_out.plan`)."""
    banks = list(banks)
    by_name = {b.name: b for b in banks}
    layers = {}
    for bank in banks:
        idx = drops.get(bank.name)
        if idx is None or idx.numel() == 0:
            continue
        if bank.transposed and bank.groups > 1:
            raise CheckpointError(
                f"layer '{bank.name}': dropping filters of a grouped transposed conv is not supported; exclude it with "
                "--exclude"
            )
        channels = []
        for ch in bank.channels:
            t = state_dict[ch.key]
            entry = {
                "key": ch.key,
                "dim": ch.dim,
                "role": ch.role,
                "old": t.detach().index_select(ch.dim, (idx + ch.offset).to(t.device)).cpu(),
            }
            if ch.offset:
                entry["offset"] = ch.offset
            channels.append(entry)
        idx = idx.detach().cpu().clone()
        readers = fanout.plan(graph, bank, by_name, idx)
        layers[bank.name] = {
            "key": bank.key,
            "groups": bank.groups,
            "transposed": bank.transposed,
            "dropped": idx,
            "channels": channels,
            "follow": list(bank.follow),
            "fan_out": readers["fan_out"],
            "silence": readers["silence"],
            "fan_out_note": readers["note"],
        }
    return {"rule": rule, "layers": layers}


def apply_drops(state_dict: dict[str, torch.Tensor], record: dict) -> None:
    """Zero the dropped filters' weights, biases and BatchNorm affine parameters, in place."""
    with torch.no_grad():
        for layer in record["layers"].values():
            for ch in layer["channels"]:
                if ch["role"] in DROPPED_VALUE:
                    zero_dropped(state_dict[ch["key"]], ch["role"], ch["dim"], channel_index(layer, ch))


class Freezer:
    """Keeps dropped filters exactly where they are while the sub-network trains.

    Zeroing their gradients is not enough: SGD momentum and weight decay, and Adam's moments,
    move parameters whose gradient is zero. So after every optimizer step the saved values are
    written back (bit-identical), and their gradients are zeroed before the step so that no new
    optimizer state builds up for them.
    """

    def __init__(self, model: torch.nn.Module, record: dict) -> None:
        tensors = dict(model.named_parameters())
        tensors.update(dict(model.named_buffers()))
        self.items = []
        for layer in record["layers"].values():
            for ch in layer["channels"]:
                t = tensors[ch["key"]]
                idx = channel_index(layer, ch).to(t.device)
                self.items.append((t, ch["dim"], idx, t.detach().index_select(ch["dim"], idx).clone()))

    def zero_grads(self) -> None:
        for t, dim, idx, _ in self.items:
            if t.grad is not None:
                t.grad.index_fill_(dim, idx, 0)

    def restore(self) -> None:
        with torch.no_grad():
            for t, dim, idx, saved in self.items:
                t.index_copy_(dim, idx, saved)


def reintroduce(
    state_dict: dict[str, torch.Tensor],
    record: dict,
    generator: torch.Generator,
    scale: float,
    fan_out: str,
    render: Callable[[str], str] | None = None,
) -> dict[str, dict]:
    """Give every dropped filter new values from the null space of [kept filters; its old value],
    in place. Kept filters are not touched. Returns, per layer, how many filters came from the
    null space and how many needed a fallback (see `nullspace.new_filters`), and whether the
    next layer's weights for them were zeroed. Each new filter's norm is `scale` times the mean
    norm of the layer's kept filters (`nullspace.filter_scale`).

    `fan_out`: what the layers reading a re-introduced channel do. "keep" (the paper): their
    weights stay as they were, trained for the old filter, so the network's output jumps; with a
    long flattened feature map into a Linear the jump can be orders of magnitude in the loss.
    "zero": their weights for it are set to 0 (the record's `fan_out` entries; through a residual
    add, its `silence` entries: the filter's BatchNorm scale and shift start at 0), so the output is
    unchanged at re-introduction and the next layers learn to use the new filter from there. Per
    layer, the report's "fan_out" says which happened: "zeroed", "silenced", "kept", or "unknown"
    (the readers could not be found; "fan_out_note" says why, and what can be done: the output
    was not kept). The note names options by `render` (the library's parameter names by default;
    the flags for `orthocli reinit`)."""
    report = {}
    with torch.no_grad():
        for name, layer in record["layers"].items():
            weight = state_dict[layer["key"]]
            dropped = layer["dropped"].cpu()
            groups, transposed = layer["groups"], layer["transposed"]
            old_weight = next(ch["old"] for ch in layer["channels"] if ch["role"] == "conv_weight")
            rows = filter_rows(weight, groups=groups, transposed=transposed)  # (G, J/G, D)
            per_group = rows.shape[1]
            old_rows = (old_weight.transpose(0, 1) if transposed else old_weight).reshape(len(dropped), -1)
            counts = {"dropped": len(dropped), "null_space": 0, "kept_only": 0, "random": 0}
            for g in range(groups):
                in_group = (dropped // per_group) == g
                if not in_group.any():
                    continue
                local = dropped[in_group] % per_group
                keep = torch.ones(per_group, dtype=torch.bool)
                keep[local] = False
                # the null space is computed on the CPU in float64, whatever device trains
                kept, old = rows[g][keep.to(rows.device)].cpu(), old_rows[in_group].cpu()
                made = new_filters(kept, old, scale=scale * filter_scale(kept, old), generator=generator)
                counts["null_space"] += made.null_space
                counts["kept_only"] += made.kept_only
                counts["random"] += made.random
                _write_rows(
                    weight, dropped[in_group].to(weight.device), made.rows.to(weight.device, weight.dtype), transposed
                )
            for ch in layer["channels"]:
                t = state_dict[ch["key"]]
                if ch["role"] in _FRESH_VALUE:
                    t.index_fill_(ch["dim"], dropped.to(t.device), _FRESH_VALUE[ch["role"]])
                elif ch["role"] == "other" or ch["role"].startswith(("dw_", "rd_")):  # as it was before the drop
                    t.index_copy_(
                        ch["dim"], channel_index(layer, ch).cpu().to(t.device), ch["old"].to(t.device, t.dtype)
                    )
            counts.update(_fan_out(state_dict, layer, fan_out, render))
            report[name] = counts
    return report


def _fan_out(state_dict: dict[str, torch.Tensor], layer: dict, policy: str, render=None) -> dict:
    """Zero (policy "zero") what reads the re-introduced channels, or silence their branch; say which."""
    readers, silence = fanout.entries(layer), layer.get("silence") or []
    if policy == "keep":
        status = "kept"
    elif readers or silence:
        for entry in (*readers, *silence):
            fanout.zero(state_dict[entry["key"]], entry)
        status = "zeroed" if readers else "silenced"
    else:
        status = "unknown"
    note = layer.get("fan_out_note") if policy == "zero" else None
    if note is not None:
        note = render_options(note, render or (lambda field: field))
    return {"fan_out": status, "fan_out_zeroed": status in ("zeroed", "silenced"), "fan_out_note": note}


def _write_rows(weight: torch.Tensor, filters: torch.Tensor, rows: torch.Tensor, transposed: bool) -> None:
    if transposed:  # (in, out, *k) with groups == 1: filter f is weight[:, f]
        values = rows.reshape(len(filters), weight.shape[0], *weight.shape[2:]).transpose(0, 1)
        weight.index_copy_(1, filters, values.contiguous())
    else:
        weight.index_copy_(0, filters, rows.reshape(len(filters), *weight.shape[1:]))


def reset_optimizer_rows(
    optimizer: torch.optim.Optimizer, model: torch.nn.Module, record: dict, fan_out: bool = False
) -> None:
    """Zero the optimizer state (momentum, Adam moments) of re-introduced filters, so stale state
    from before they were dropped does not push their new values; with `fan_out` also that of the
    next layer's weights for them (after `reintroduce(fan_out="zero")`)."""
    params = dict(model.named_parameters())
    for layer in record["layers"].values():
        for ch in layer["channels"]:
            p = params.get(ch["key"])
            state = optimizer.state.get(p) if p is not None else None
            for value in (state or {}).values():
                if isinstance(value, torch.Tensor) and value.shape == p.shape:
                    value.index_fill_(ch["dim"], channel_index(layer, ch).to(value.device), 0)
        for entry in fanout.entries(layer) if fan_out else []:
            p = params.get(entry["key"])
            state = optimizer.state.get(p) if p is not None else None
            for value in (state or {}).values():
                if isinstance(value, torch.Tensor) and value.shape == p.shape:
                    fanout.zero(value, entry)


def write_frozen_values(model: nn.Module, record: dict) -> None:
    """Give the dropped filters' tensors the values they keep while frozen, in place."""
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    missing = sorted(
        ch["key"] for layer in record["layers"].values() for ch in layer["channels"] if ch["key"] not in tensors
    )
    if missing:
        raise CheckpointError(
            f"the drop record names tensors this model does not have ({', '.join(missing[:5])}); it belongs to"
            " another model"
        )
    with torch.no_grad():
        for layer in record["layers"].values():
            for ch in layer["channels"]:
                t = tensors[ch["key"]]
                idx = channel_index(layer, ch).to(t.device)
                # as `apply_drops` leaves them (a following depthwise conv's too), else the saved values
                if not zero_dropped(t, ch["role"], ch["dim"], idx):
                    t.index_copy_(ch["dim"], idx, ch["old"].to(t.device, t.dtype))


class SubNetwork:
    """A drop record applied to a live model and its optimizer: the dropped filters are silenced
    (zeroed, and masked where zero does not stay zero: `masking.py`) and stay bit-identical through
    every optimizer step (step hooks) until `remove()`. For a checkpoint `orthocli prune` wrote,
    pass its record (extras["prune"]).

    Create it after the model is on its device, and before `torch.compile` calls the model (a mask
    hook added later would not be compiled in); the model's values of the dropped filters are set to
    the record's frozen values (zero weights, biases and BatchNorm affine parameters)."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        record: dict,
        *,
        masks: ChannelMasks | None = None,
        hooks: bool = True,
    ) -> None:
        self.model, self.record = unwrap(model), record
        write_frozen_values(self.model, record)  # (first: it says when the record is another model's)
        self._own_masks = masks is None  # its own hooks, removed with it; else the controller's, cleared
        if masks is None:
            graph = method_graph(self.model)
            masks = ChannelMasks(graph, banks_from_model(graph))
            masks.install(record["layers"])
        self._masks = masks
        masks.set(record)
        self.freezer = Freezer(self.model, record)
        self._handles = []
        if hooks:  # (RePr calls the freezer from its own step hooks: none may be added while they run)
            self._handles = [
                optimizer.register_step_pre_hook(lambda *_: self.freezer.zero_grads()),
                optimizer.register_step_post_hook(lambda *_: self.freezer.restore()),
            ]

    def remove(self) -> None:
        """Unmask and unfreeze (the filters keep their frozen values until changed)."""
        if self._own_masks:
            self._masks.remove()
        self._masks.clear()
        for h in self._handles:
            h.remove()
        self._handles = []
