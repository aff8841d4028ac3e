"""What the data-dependent rankings read (`ranking.Taylor`, `ranking.Activation`) and the BatchNorm
scale `ranking.BnScale` reads, per filter of each candidate conv.

`FilterStatistics` gathers, from the training batches of one epoch (the controller switches it on
for the last standard unit before each drop, `RePr`), per output channel of each watched conv:
"activation", the mean |conv output|, and "taylor", the mean |conv output x its gradient| (the
first-order Taylor estimate of the loss change were the channel zero; Molchanov et al. 2017). A
forward hook reads the output of a training-mode forward pass, a tensor hook on it the gradient;
sums and counts are float64 and added in batch order, so the same batches give the same bits, and
`state_dict()` holds them, so a run saved mid-epoch resumes bit-identically. The work is one
elementwise product and a reduction per conv and batch, in one epoch of each cycle.

`bn_scales`: per conv bank, the scale (gamma) of the BatchNorm its channels pass through, read
from the model's filter banks (`network.banks`), or None where none follows.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from orthocli.method.ranking import ACTIVATION, TAYLOR
from orthocli.network.banks import FilterBank


def bn_scales(banks: Iterable[FilterBank], state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | None]:
    """Bank name -> the following BatchNorm's scale (a detached float64 copy), None where none follows."""
    out: dict[str, torch.Tensor | None] = {}
    for bank in banks:
        keys = [ch.key for ch in bank.channels if ch.role == "bn_weight" and ch.key in state]
        out[bank.name] = state[keys[0]].detach().to(torch.float64).cpu().clone() if keys else None
    return out


def _abs_sums(t: torch.Tensor) -> torch.Tensor:
    """Per output channel (dim 1), the sum of |t| over every other dim, accumulated in float64 (one
    pass), on `t`'s device: no copy to the CPU, so no wait for the accelerator, per batch."""
    dims = [d for d in range(t.dim()) if d != 1]
    return torch.linalg.vector_norm(t.detach(), ord=1, dim=dims, dtype=torch.float64)


class FilterStatistics:
    """Per-channel sums of |activation| and |activation x gradient| over the batches seen while
    `active`; `result()` gives the means. `wanted`: which of the two to gather (the gradient hook
    only for "taylor")."""

    def __init__(self, model: nn.Module, names: Iterable[str], wanted: Iterable[str]) -> None:
        self.wanted = frozenset(wanted) & {ACTIVATION, TAYLOR}
        self.active = False
        self.sums: dict[str, dict[str, torch.Tensor]] = {}
        self.counts: dict[str, dict[str, int]] = {}
        self._handles = []
        for name in names:
            self._handles.append(model.get_submodule(name).register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        @torch.compiler.disable  # plain Python even inside a compiled forward pass
        def hook(module: nn.Module, args, output) -> None:
            if not (self.active and module.training and isinstance(output, torch.Tensor)):
                return
            per_channel = output.numel() // output.shape[1] if output.dim() > 1 else 0  # values per channel
            if ACTIVATION in self.wanted:
                self._add(name, ACTIVATION, _abs_sums(output), per_channel)
            if TAYLOR in self.wanted and output.requires_grad:
                act = output.detach()

                def on_grad(grad: torch.Tensor) -> None:
                    self._add(name, TAYLOR, _abs_sums(act * grad), per_channel)

                output.register_hook(on_grad)

        return hook

    def _add(self, name: str, what: str, sums: torch.Tensor, n: int) -> None:
        layer = self.sums.setdefault(name, {})
        layer[what] = layer[what].to(sums.device) + sums if what in layer else sums
        counts = self.counts.setdefault(name, {})
        counts[what] = counts.get(what, 0) + n

    def result(self) -> dict[str, dict[str, torch.Tensor]]:
        """Layer -> statistic -> the mean per filter (float64), over what was gathered."""
        return {
            name: {what: s.cpu() / max(1, self.counts[name][what]) for what, s in layer.items()}
            for name, layer in self.sums.items()
        }

    def clear(self) -> None:
        self.sums, self.counts = {}, {}

    def state_dict(self) -> dict:
        return {
            "sums": {n: {w: s.cpu().clone() for w, s in layer.items()} for n, layer in self.sums.items()},
            "counts": {n: dict(c) for n, c in self.counts.items()},
        }

    def load_state_dict(self, state: dict | None) -> None:
        state = state or {"sums": {}, "counts": {}}
        self.sums = {n: {w: s.clone() for w, s in layer.items()} for n, layer in state["sums"].items()}
        self.counts = {n: {w: int(c) for w, c in layer.items()} for n, layer in state["counts"].items()}

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
