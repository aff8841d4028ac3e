"""What a data-dependent criterion costs (a benchmark, not a test): the wall time of a method run
ranking by `--criterion` (taylor by default: forward and gradient hooks gathering per-filter
statistics over the last standard epoch before each drop) against the same run ranking by
orthogonality, side by side. Goal: ratio <= 1.02.

    python benchmarks/bench_criteria_cost.py [--criterion taylor] [--data mnist1d] [--epochs 20]
        [--width 32] [--repeats 5] [--threads 1]

The two runs alternate (orthogonality, criterion, orthogonality, ...), each from the same seed and
weights, so other load on the machine falls on both; the best and the median of `--repeats` each
are printed, and their ratios (one untimed warm-up run first). Both drop the same counts (the drop rule reads the scores, whatever
the ranking), so the difference is the gathering and the choosing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from orthocli.config import TrainConfig
from orthocli.data import prepare
from orthocli.network.models import arch_spec, build_model, init_weights
from orthocli.seeding import set_seed
from orthocli.training.loop import train


def fresh_model(data, width: int):
    set_seed(0)
    arch = arch_spec(
        "convnet",
        in_channels=data.in_channels,
        num_classes=data.num_classes,
        input_shape=list(data.spatial_shape),
        width=width,
    )
    model = build_model(arch)
    init_weights(model, "relu")
    return model


def timed(data, cfg: TrainConfig, width: int) -> float:
    model = fresh_model(data, width)
    t0 = time.perf_counter()
    train(model, data, cfg)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--criterion", default="taylor", help="the ranking to time against orthogonality")
    ap.add_argument("--data", default="mnist1d", help="a built-in set or a data file (default: mnist1d)")
    ap.add_argument("--max-samples", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = prepare(args.data, max_samples=args.max_samples)
    s1 = max(1, args.epochs // 5)
    common = dict(
        cycles=3, s1=s1, s2=max(1, s1 // 2), max_epochs=args.epochs, patience=10**9, batch_size=args.batch_size
    )
    base, other = TrainConfig(**common), TrainConfig(**common, ranking=args.criterion)
    timed(data, other, args.width)  # warm-up, not counted: the first run pays for loading kernels
    times: dict[str, list[float]] = {"orthogonality": [], args.criterion: []}
    for _ in range(args.repeats):
        times["orthogonality"].append(timed(data, base, args.width))
        times[args.criterion].append(timed(data, other, args.width))
    print(
        f"{data.source}: {len(data.train)} train samples, convnet width {args.width}, {args.epochs} epochs (3 cycles,"
        f" S1 {s1}, S2 {base.s2}), batch {args.batch_size}, {torch.get_num_threads()} thread(s),"
        f" torch {torch.__version__}; {args.repeats} runs each, alternating"
    )
    for name, runs in times.items():
        print(f"{name:>14}: best {min(runs):7.3f} s, median {statistics.median(runs):7.3f} s")
    best = min(times[args.criterion]) / min(times["orthogonality"])
    median = statistics.median(times[args.criterion]) / statistics.median(times["orthogonality"])
    print(f"ratio {args.criterion}/orthogonality: best {best:.3f}, median {median:.3f} (goal <= 1.02)")


if __name__ == "__main__":
    main()
