"""RePr in a plain PyTorch training loop, with orthocli's Python API.

    python docs/examples/plain_loop.py              # well under a minute on a laptop CPU
    python docs/examples/plain_loop.py --resume     # continue from plain_loop.pt, written each epoch

Your model, your data, your optimizer: here a small ConvNet with BatchNorm on the 8x8 digits that
ship with orthocli. Two cycles of 3 standard epochs + 2 sub-network epochs, then 3 more epochs.
"""

from __future__ import annotations

import argparse
import os
from importlib.resources import files

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from orthocli import RePr, ReprConfig


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )  # fmt: skip
        self.classifier = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def accuracy(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return correct / total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--state", default="plain_loop.pt")
    parser.add_argument("--epochs", type=int, default=13)
    parser.add_argument("--s1", type=int, default=3)
    parser.add_argument("--s2", type=int, default=2)
    parser.add_argument("--samples", type=int, default=None, help="train on the first N digits only")
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)

    digits = np.load(files("orthocli") / "data" / "digits.npz")
    train_set = TensorDataset(
        torch.from_numpy(digits["x"][: args.samples]), torch.from_numpy(digits["y"][: args.samples])
    )
    test_set = TensorDataset(torch.from_numpy(digits["x_test"]), torch.from_numpy(digits["y_test"]))
    train_loader = DataLoader(train_set, batch_size=64, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=512)

    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    repr_ = RePr(model, optimizer, ReprConfig(s1=args.s1, s2=args.s2, cycles=2, ratio=0.3, seed=0))
    start = 0
    if args.resume:
        saved = torch.load(args.state, weights_only=True)
        model.load_state_dict(saved["model"])  # the user's own class, strictly: no extra keys
        optimizer.load_state_dict(saved["optimizer"])
        repr_.load_state_dict(saved["repr"])  # phase, counters, the drop record
        torch.set_rng_state(saved["rng"])
        start = saved["epoch"]

    for epoch in range(start, args.epochs):
        model.train()
        for x, y in train_loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()  # RePr's step hooks keep the dropped filters frozen
        phase = repr_.phase  # of the epoch that just ran
        acc = accuracy(model, test_loader)  # evaluation does not advance the schedule
        done = repr_.epoch_end()  # the drop (next epoch) or the re-introduction happens here
        line = f"epoch {epoch + 1:2d}  {phase:8s}  test accuracy {acc:.3f}"
        if done is not None:
            dropped = sum(done.dropped.values())
            line += f"  -> cycle {done.cycle}: {dropped} filters re-introduced, {accuracy(model, test_loader):.3f}"
        print(line, flush=True)
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "repr": repr_.state_dict(),
            "rng": torch.get_rng_state(),
            "epoch": epoch + 1,
        }
        torch.save(state, args.state)


if __name__ == "__main__":
    main()
