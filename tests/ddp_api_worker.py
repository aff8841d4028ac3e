"""Run under torchrun by tests/training/test_distributed.py: a user's own DistributedDataParallel loop on
the CPU (gloo) with orthocli.RePr; each rank trains on its own data and writes its parameters, its
masks after every epoch and its cycles to OUT_DIR/rank<R>.pt."""

import gc
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from orthocli import RePr
from orthocli.network.models import ConvNet


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    net = ConvNet(1, 4, [8, 8], width=8, batchnorm=True)
    model = DistributedDataParallel(net)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.01)
    ctrl = RePr(model, optimizer, s1=1, s2=2, cycles=1, ratio=0.4)
    g = torch.Generator().manual_seed(10 + rank)  # each rank its own share of the data
    x, y = torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 4, (32,), generator=g)
    masks = []
    for _ in range(4):
        model.train()
        for i in range(0, 32, 8):
            loss = F.cross_entropy(model(x[i : i + 8]), y[i : i + 8])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        masks.append({n: m.tolist() for n, m in ctrl.masks().items()})
        ctrl.epoch_end()
    # parameters: BatchNorm statistics are each rank's own between forward passes (DDP broadcasts
    # rank 0's at the start of each), as in any DDP loop
    params = {k: v.detach() for k, v in net.named_parameters()}
    result = {"params": params, "masks": masks, "cycles": [c.dropped for c in ctrl.cycles]}
    torch.save(result, f"{out_dir}/rank{rank}.pt")
    # The DDP wrapper's reducer holds the process group: drop it first, so the group (and gloo's
    # threads) end here and not at interpreter exit, where they can abort the process (SIGABRT)
    del model, ctrl, optimizer
    gc.collect()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
