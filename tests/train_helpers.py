"""Helpers for the tests that train tiny models, through the library and through the CLI."""

from __future__ import annotations

import torch

from orthocli import training
from orthocli.models import arch_spec, build_model, init_weights

# One RePr cycle of `orthocli train`, 1 + 1 epochs, then one standard epoch.
ONE_CYCLE = ["--s1", "1", "--s2", "1", "--cycles", "1", "--max-epochs", "3"]
# `orthocli train` at its smallest: 120 digits, 4 filters per layer, one cycle.
TINY = ["--max-samples", "120", "--width", "4", *ONE_CYCLE, "--batch-size", "32"]

FAST = dict(s1=1, s2=1, cycles=1, patience=100, batch_size=32)  # one short cycle


def convnet(data, seed=0, **options):
    training.set_seed(seed)
    arch = arch_spec(
        "convnet",
        in_channels=data.in_channels,
        num_classes=data.num_classes,
        input_shape=list(data.spatial_shape),
        **{"width": 6, **options},
    )
    model = build_model(arch)
    init_weights(model, options.get("activation", "relu"))
    return model


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def clone_state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
