"""Fixtures of the train command's tests (the random arm, the criteria arms)."""

from __future__ import annotations

import pytest


@pytest.fixture
def drops_seen(monkeypatch):
    """Every cycle's choice the controllers make: (ranking, {layer: dropped indices})."""
    import orthocli.method.controller

    seen = []
    real = orthocli.method.controller.plan_drops

    from orthocli.errors import OptionError

    def spy(layers, config, **kw):
        try:
            plan = real(layers, config, **kw)
        except OptionError:  # the rule chose nothing: the cycle trains the whole network
            seen.append((config.ranking, {}))
            raise
        if "seed" in kw:  # a cycle's choice (the checks at construction pass none)
            seen.append((config.ranking, {n: d.tolist() for n, d in plan.drops.items() if len(d)}))
        return plan

    monkeypatch.setattr(orthocli.method.controller, "plan_drops", spy)
    return seen
