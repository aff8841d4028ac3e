"""Run under torchrun by tests/training/test_distributed.py: trains a tiny ConvNet with the RePr schedule on
a streamed image folder (DistributedSampler shards) and writes this rank's final weights, drops and
the samples it read in the first epoch to OUT_DIR/rank<R>.pt."""

import os
import sys

import torch

from orthocli.config import TrainConfig
from orthocli.data import distributed_batches, prepare
from orthocli.network.models import ConvNet, init_weights
from orthocli.seeding import set_seed, sub_seed
from orthocli.training.loop import train
from orthocli.training.runtime import setup, teardown


def main(folder: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    rt = setup("cpu", "fp32", deterministic=True)
    data = prepare(folder, seed=0, workers=1, augment=True)
    set_seed(0)
    model = ConvNet(3, 3, [12, 12], width=6)
    init_weights(model, "relu")
    cfg = TrainConfig(s1=1, s2=1, cycles=1, max_epochs=3, batch_size=8, deterministic=True, ratio=0.3)
    result = train(model, data, cfg, runtime=rt)
    positions = sum(distributed_batches(len(data.train), 8, sub_seed(0, 1, 0), 0, rt.rank, rt.world_size), [])
    torch.save(
        {
            "state_dict": result.model.state_dict(),
            "cycles": result.cycles,
            "world": rt.world_size,
            "read": data.train.indices[positions].tolist(),
            "train": data.train.indices.tolist(),
        },
        os.path.join(out_dir, f"rank{rt.rank}.pt"),
    )
    teardown(rt)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
