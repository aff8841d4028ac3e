"""Speed of `orthocli.training.loop.train` (a benchmark, not a test). Prints two ratios, each measured in
this one run on the same machine:

1. standard-mode throughput of `train()` against a minimal hand-written PyTorch loop on the same
   model, data, batch size and optimizer, both evaluating the validation set once per epoch
   (goal: >= 0.95);
2. wall time of a method run (3 cycles) against a standard run of the same number of epochs
   (goal: <= 1.05).

    .venv/bin/python benchmarks/train_speed.py [--epochs 40] [--width 32] [--threads 1] [--repeats 3]
    .venv/bin/python benchmarks/train_speed.py --device-compare   # on a CUDA machine: CUDA vs CPU
    .venv/bin/python benchmarks/train_speed.py --compile          # torch.compile (inductor) against eager

With `--compile`: standard-mode throughput of `train --compile` against eager `train`, and the
method's wall ratio to standard training, both compiled (the first of the repeats pays for
compiling; the best is kept).

Runs alternate and the best of `--repeats` is kept, so other load on the machine counts less.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from orthocli.config import TrainConfig
from orthocli.data import prepare
from orthocli.network.models import arch_spec, build_model, init_weights
from orthocli.seeding import set_seed
from orthocli.training.loop import train
from orthocli.training.runtime import Runtime


def fresh_model(data, width: int):
    set_seed(0)
    model = build_model(
        arch_spec(
            "convnet",
            in_channels=data.in_channels,
            num_classes=data.num_classes,
            input_shape=list(data.spatial_shape),
            width=width,
        )
    )
    init_weights(model, "relu")
    return model


def hand_loop(model, data, epochs: int, batch_size: int) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x, y = data.train.x, data.train.y
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        for idx in torch.randperm(len(y), generator=torch.Generator().manual_seed(epoch)).split(batch_size):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            (model(data.val.x).argmax(1) == data.val.y).float().mean().item()
    return time.perf_counter() - t0


def timed_train(model, data, cfg, runtime=None) -> float:
    t0 = time.perf_counter()
    train(model, data, cfg, runtime=runtime)
    if runtime is not None and runtime.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def device_compare(args) -> None:
    """Standard-mode throughput of train() on CUDA (bf16 autocast, then fp32) against the CPU,
    alternating, best of --repeats; ResNet-20 on digits upscaled to 32x32 so the GPU has work."""
    data = prepare("digits")
    up = lambda a: type(a)(F.interpolate(a.x, size=32), a.y)  # noqa: E731
    import dataclasses

    data = dataclasses.replace(data, train=up(data.train), val=up(data.val), test=up(data.test), spatial_shape=(32, 32))
    cfg = TrainConfig(cycles=0, s1=args.epochs, patience=10**9, batch_size=128)

    def model():
        set_seed(0)
        return build_model(arch_spec("resnet20", in_channels=1, num_classes=10, input_shape=[32, 32]))

    runs = {
        "cpu fp32": Runtime(torch.device("cpu")),
        "cuda fp32": Runtime(torch.device("cuda")),
        "cuda bf16": Runtime(torch.device("cuda"), "bf16"),
    }
    times = {k: [] for k in runs}
    timed_train(model(), data, cfg, runs["cuda fp32"])  # warm-up: CUDA context, kernels
    for _ in range(args.repeats):
        for name, rt in runs.items():
            times[name].append(timed_train(model(), data, cfg, rt))
    n = args.epochs * len(data.train)
    print(
        f"{torch.cuda.get_device_name(0)}; resnet20 on digits 32x32, {args.epochs} epochs, batch 128; best of {args.repeats}"
    )
    for name, t in times.items():
        print(
            f"{name:10} {min(t):7.2f} s  {n / min(t):9.0f} samples/s  speed-up over cpu {min(times['cpu fp32']) / min(t):6.2f}x"
        )


def steady_epoch(model, data, cfg, runtime) -> tuple[float, float]:
    """(wall time of the run, median epoch time after the first two): compiling happens in the
    first epochs (training and evaluation graphs), so the second figure is the compiled model's pace."""
    import statistics

    t0 = time.perf_counter()
    result = train(model, data, cfg, runtime=runtime)
    total = time.perf_counter() - t0
    return total, statistics.median(e["seconds"] for e in result.history[2:])


def compile_compare(args, data) -> None:
    """Standard training compiled against eager, and the method's overhead compiled, alternating."""
    standard = TrainConfig(cycles=0, s1=args.epochs, patience=10**9, batch_size=args.batch_size)
    s1 = max(1, args.epochs // 5)
    method = TrainConfig(
        cycles=3, s1=s1, s2=max(1, s1 // 2), max_epochs=args.epochs, patience=10**9, batch_size=args.batch_size
    )
    cpu = torch.device("cpu")
    eager, compiled, compiled_rep = [], [], []
    for _ in range(args.repeats):
        eager.append(steady_epoch(fresh_model(data, args.width), data, standard, Runtime(cpu)))
        compiled.append(steady_epoch(fresh_model(data, args.width), data, standard, Runtime(cpu, compile=True)))
        compiled_rep.append(steady_epoch(fresh_model(data, args.width), data, method, Runtime(cpu, compile=True)))
    best = lambda runs, i: min(r[i] for r in runs)  # noqa: E731
    print(
        f"{data.source}, convnet width {args.width}, {args.epochs} epochs, batch {args.batch_size},"
        f" {torch.get_num_threads()} thread(s), torch {torch.__version__}; best of {args.repeats}"
    )
    print(f"train() eager      {best(eager, 0):7.2f} s in all, {best(eager, 1):.3f} s per epoch after the first two")
    print(
        f"train() compiled   {best(compiled, 0):7.2f} s in all, {best(compiled, 1):.3f} s per epoch after the first"
        f" two; throughput ratio compiled/eager {best(eager, 0) / best(compiled, 0):.3f} in all,"
        f" {best(eager, 1) / best(compiled, 1):.3f} per epoch"
    )
    print(
        f"RePr compiled      {best(compiled_rep, 0):7.2f} s  (3 cycles, S1 {s1}, S2 {method.s2})  wall ratio to"
        f" compiled standard {best(compiled_rep, 0) / best(compiled, 0):.3f} (goal <= 1.05)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device-compare", action="store_true", help="CUDA (bf16, fp32) against the CPU")
    ap.add_argument("--compile", action="store_true", help="train --compile against eager train, on the CPU")
    ap.add_argument("--data", default="digits", help="a built-in set or a data file (default: digits)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device_compare:
        args.epochs = min(args.epochs, 5)
        args.repeats = min(args.repeats, 2)
        return device_compare(args)
    data = prepare(args.data)
    if args.compile:
        return compile_compare(args, data)
    standard = TrainConfig(cycles=0, s1=args.epochs, patience=10**9, batch_size=args.batch_size)
    s1 = max(1, args.epochs // 5)
    method = TrainConfig(
        cycles=3, s1=s1, s2=max(1, s1 // 2), max_epochs=args.epochs, patience=10**9, batch_size=args.batch_size
    )
    hand, std, rep = [], [], []
    for _ in range(args.repeats):
        hand.append(hand_loop(fresh_model(data, args.width), data, args.epochs, args.batch_size))
        std.append(timed_train(fresh_model(data, args.width), data, standard))
        rep.append(timed_train(fresh_model(data, args.width), data, method))
    n = args.epochs * len(data.train)
    print(
        f"{data.source}, convnet width {args.width}, {args.epochs} epochs, batch {args.batch_size},"
        f" {torch.get_num_threads()} thread(s); best of {args.repeats}"
    )
    print(f"hand loop        {min(hand):7.2f} s  {n / min(hand):9.0f} samples/s")
    print(
        f"train() standard {min(std):7.2f} s  {n / min(std):9.0f} samples/s  throughput ratio {min(hand) / min(std):.3f} (goal >= 0.95)"
    )
    print(
        f"train() RePr     {min(rep):7.2f} s  (3 cycles, S1 {s1}, S2 {method.s2})  wall ratio to standard {min(rep) / min(std):.3f} (goal <= 1.05)"
    )


if __name__ == "__main__":
    main()
