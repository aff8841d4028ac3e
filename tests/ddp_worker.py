"""Run under torchrun by tests/training/test_distributed.py: trains a tiny ConvNet with the RePr schedule
through `training.train` and writes this rank's final weights to OUT_DIR/rank<R>.pt."""

import os
import sys

import torch

from orthocli.config import TrainConfig
from orthocli.data import prepare
from orthocli.network.models import ConvNet, init_weights
from orthocli.seeding import set_seed
from orthocli.training.loop import train
from orthocli.training.runtime import setup, teardown


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    rt = setup("cpu", "fp32", deterministic=True)
    data = prepare("digits", max_samples=256, seed=0)
    set_seed(0)
    model = ConvNet(1, 10, [8, 8], width=8)
    init_weights(model, "relu")
    cfg = TrainConfig(s1=1, s2=1, cycles=1, max_epochs=3, batch_size=64, deterministic=True, ratio=0.3)
    result = train(model, data, cfg, runtime=rt)
    torch.save(
        {"state_dict": result.model.state_dict(), "cycles": result.cycles, "world": rt.world_size},
        os.path.join(out_dir, f"rank{rt.rank}.pt"),
    )
    teardown(rt)


if __name__ == "__main__":
    main(sys.argv[1])
