"""The method's cost on real models (issue 33 item 5), two measurements in one run:

1. **Step overhead.** torchvision's mobilenet_v3_small and resnet18 (weights=None, 10 classes),
   batch 32 of 3x64x64, CPU, eager, SGD with momentum: a plain training step against the same
   step with `orthocli.RePr` attached and a sub-network active (its masks' forward hooks and the
   optimizer's freeze hooks run on every step). The two arms are two copies of one model, timed
   in interleaved blocks (the machine is shared and noisy); prints the median step times and their
   ratio (goal <= 1.05).
2. **score.** `orthocli score FILE --json` on a resnet50-size safetensors file (torchvision's
   resnet50, 25.6M parameters) against the minimal numpy script of bench_score.py, fresh
   processes, alternated; checks both give the same scores first (goal <= 1.3).

torchvision is needed. Where `import torchvision` fails (a CUDA build beside a CPU-only torch,
"operator torchvision::nms does not exist") the two detection ops' schemas are defined first,
as docs/commands.md ("Models from torchvision and timm") shows; no classification model calls them.

Usage:
    python benchmarks/bench_zoo_cost.py [--rounds 10] [--steps 3] [--score-repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_score  # its minimal numpy script and fresh-process timing


def import_torchvision():
    import torch

    try:
        import torchvision
    except RuntimeError:  # CUDA torchvision on a CPU torch: its C extension did not load
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import_torchvision.lib = lib  # keep the definitions alive
        import torchvision
    return torchvision


def step_times(name: str, rounds: int, steps: int) -> tuple[list[float], list[float], int]:
    """Per-step seconds of the plain arm and the RePr arm, `rounds` interleaved blocks of `steps`."""
    import torch
    import torch.nn.functional as F

    from orthocli import RePr, ReprConfig

    tv = import_torchvision()
    torch.manual_seed(0)
    plain = getattr(tv.models, name)(weights=None, num_classes=10)
    method = copy.deepcopy(plain)
    x = torch.randn(32, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(2))
    opt_plain = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    opt_method = torch.optim.SGD(method.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    # s1=0: the drop is made before the first step, and the sub-network lasts past the benchmark
    repr_ = RePr(method, opt_method, ReprConfig(s1=0, s2=10_000, cycles=1, ratio=0.3, unit="step"))
    record = repr_.prepare() or {}
    dropped = sum(len(layer["dropped"]) for layer in record.get("layers", {}).values())

    def step(model, opt) -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    plain.train(), method.train()
    for model, opt in ((plain, opt_plain), (method, opt_method)):  # warm-up (allocator, first-call costs)
        step(model, opt)
    times: tuple[list[float], list[float]] = ([], [])
    for r in range(rounds):
        arms = [(0, plain, opt_plain), (1, method, opt_method)]
        for i, model, opt in arms if r % 2 == 0 else arms[::-1]:  # alternate which arm goes first
            for _ in range(steps):
                start = time.perf_counter()
                step(model, opt)
                times[i].append(time.perf_counter() - start)
    return times[0], times[1], dropped


def score_times(repeats: int) -> tuple[list[float], list[float], int]:
    import torch
    from safetensors.torch import save_file

    tv = import_torchvision()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "resnet50.safetensors")
        model = tv.models.resnet50(weights=None)
        state = {k: v.contiguous() for k, v in model.state_dict().items() if v.is_floating_point()}
        params = sum(p.numel() for p in model.parameters())
        save_file(state, path)
        del model, state
        torch.set_num_threads(1)
        bench_score.check_same_scores([path])
        bench_score.run(bench_score.orthocli([path])), bench_score.run(bench_score.minimal([path]))  # warm cache
        ours, plain = [], []
        for _ in range(repeats):
            ours.append(bench_score.run(bench_score.orthocli([path])))
            plain.append(bench_score.run(bench_score.minimal([path])))
    return ours, plain, params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10, help="interleaved blocks per arm")
    ap.add_argument("--steps", type=int, default=3, help="training steps per block")
    ap.add_argument("--score-repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the training steps")
    ap.add_argument("--models", default="mobilenet_v3_small,resnet18")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()},"
        f" torch {torch.__version__}, {args.threads} thread(s), load {os.getloadavg()[0]:.1f} at start"
    )
    print(
        f"command: python benchmarks/bench_zoo_cost.py --rounds {args.rounds} --steps {args.steps}"
        f" --score-repeats {args.score_repeats} --threads {args.threads}"
    )
    print(f"{'model (batch 32, 3x64x64)':28} {'plain step':>11} {'RePr step':>11} {'ratio':>7}   (goal <= 1.05)")
    for name in args.models.split(","):
        plain, method, dropped = step_times(name, args.rounds, args.steps)
        a, b = statistics.median(plain), statistics.median(method)
        print(
            f"{name:28} {a * 1000:8.1f} ms {b * 1000:8.1f} ms {b / a:7.3f}   (medians of {len(plain)} steps;"
            f" {dropped} filters dropped)"
        )
    ours, plain, params = score_times(args.score_repeats)
    a, b = statistics.median(ours), statistics.median(plain)
    print(
        f"{'score resnet50.safetensors':28} {a:9.3f} s {b:9.3f} s {a / b:7.2f}   (orthocli vs minimal numpy,"
        f" {params / 1e6:.1f}M params, medians of {len(ours)}; goal <= 1.3)"
    )
    print(f"load {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
