"""RePr as a Lightning callback (`pip install 'orthocli[lightning]'`): the `RePr` controller on
the LightningModule (or one of its submodules) and its one optimizer, told of each training
epoch; its state travels in Lightning's checkpoints, so `trainer.fit(ckpt_path=...)` continues
in the right phase with the right filters masked and frozen.

Imported only when `orthocli.ReprCallback` is first used: `import orthocli` never loads Lightning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl

from orthocli.config import ReprConfig
from orthocli.errors import UsageError
from orthocli.method.controller import RePr


class ReprCallback(pl.Callback):
    """Runs RePr inside `Trainer.fit`.

        trainer = lightning.Trainer(max_epochs=60, callbacks=[ReprCallback(s1=20, s2=10, cycles=2)])

    `module`: the attribute path of the network to act on inside the LightningModule ("" = the
    LightningModule itself, whose forward must then be traceable by torch.fx); it may be a
    `torch.compile`d module. The options are `ReprConfig`'s (`ranking` included). `controller` is
    the `RePr` it runs: its cycles, drops and fallbacks. With `unit="epoch"` each finished training
    epoch counts; with `unit="step"` each optimizer step that really happens (not a skipped AMP
    step, not an accumulation batch). `counts`: as `RePr`'s, cycle -> layer -> filters instead of
    the drop rule (a `ranking="random"` control matched to a method run:
    `counts=method_callback.controller.counts`)."""

    def __init__(
        self,
        config: ReprConfig | None = None,
        *,
        module: str = "",
        counts: Mapping[int, Mapping[str, int]] | None = None,
        **options: Any,
    ) -> None:
        if config is not None and options:
            raise TypeError("give either a ReprConfig or keyword options, not both")
        self.config = config if config is not None else ReprConfig(**options)
        self.module = module
        self.counts = counts
        # created at fit start, when the optimizer exists; kept after fit, so that trainer.test/validate
        # see the network training ended with (masked, if it ended inside a sub-network phase)
        self.repr: RePr | None = None
        self._loaded: dict | None = None  # a checkpoint's state, until then

    @property
    def controller(self) -> RePr | None:
        """The `RePr` controller acting on the network (None before the first fit): where the
        schedule stands (`phase`, `cycle`, `epoch`, `step`), the active drop record (`record`,
        `masks()`), and one `Cycle` per re-introduction (`cycles`: what each dropped, how the new
        filters were found, `fallbacks`, the sub-network's optimizer `steps`)."""
        return self.repr

    @property
    def state_key(self) -> str:
        return f"{type(self).__name__}[module={self.module!r}]"

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if len(trainer.optimizers) != 1:
            raise UsageError(
                f"ReprCallback needs exactly one optimizer; configure_optimizers gave {len(trainer.optimizers)}"
            )
        state = self._loaded
        if self.repr is not None:  # a second fit with this callback: continue where the first stopped
            state = state or self.repr.state_dict()
            self.repr.remove()
        model = pl_module.get_submodule(self.module) if self.module else pl_module
        self.repr = RePr(model, trainer.optimizers[0], self.config, counts=self.counts)
        if state:
            self.repr.load_state_dict(state)
        self._loaded = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A checkpoint written at validation end precedes this callback's epoch_end of that epoch:
        # catch up (the same epoch_end on the same weights as the uninterrupted run).
        while self.repr is not None and self.repr.epoch < trainer.current_epoch:
            self.repr.epoch_end()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.repr is not None:
            self.repr.epoch_end()

    def state_dict(self) -> dict[str, Any]:
        if self.repr is not None:
            return self.repr.state_dict()
        return dict(self._loaded or {})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores callbacks before the optimizers exist: applied at fit start
        self._loaded = state_dict or None
