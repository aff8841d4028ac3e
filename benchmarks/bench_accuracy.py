"""Does RePr beat ordinary training with the same budget? Method runs against same-seed controls.

For every seed, one control (`--baseline`: the same schedule and epochs, same data order, nothing
dropped) and one method run per configuration of the grid; the difference is paired by seed.
Prints a Markdown table (mean +- standard deviation over seeds, wins) with the command and machine,
and writes every run as a JSON line to --out.

    python benchmarks/bench_accuracy.py --data digits --arch convnet --grid full --seeds 5
    python benchmarks/bench_accuracy.py --data benchmarks/data/mnist5k.npz --arch convnet --grid small
    python benchmarks/bench_accuracy.py --data digits --arch resnet20 --grid small --set width=8
    python benchmarks/bench_accuracy.py --data digits --grid knobs        # the investigation

Grids: full = scope {global, layer} x first layer {skipped, dropped from} x ratio {0.1, 0.3, 0.5};
small = the same at ratio 0.3; knobs = the default configuration with one setting changed at a
time (re-init scale, lr schedule, optimizer, S2 length); defaults = the candidates for
train's defaults. `--set key=value` changes the base
configuration of every run (TrainConfig fields, or width/depth/batchnorm/activation).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from multiprocessing import get_context

ARCH_KEYS = ("width", "depth", "kernel", "pool", "batchnorm", "activation")
# Settings that only change what the method drops and re-introduces: configurations differing only
# in these share one control per seed. Any other setting (optimizer, schedule, epochs) gets a
# control of its own with the same setting, so every comparison has the same budget.
DROP_KEYS = ("ratio", "threshold", "scope", "min_keep", "skip_first", "layers", "exclude", "reinit_scale")


def control_key(overrides: dict) -> str:
    return json.dumps({k: v for k, v in sorted(overrides.items()) if k not in DROP_KEYS})


def grid(name: str) -> list[tuple[str, dict]]:
    if name in ("full", "small"):
        ratios = (0.1, 0.3, 0.5) if name == "full" else (0.3,)
        out = []
        for scope, skip, ratio in itertools.product(("global", "layer"), (True, False), ratios):
            label = f"{scope}, {'first layer skipped' if skip else 'first layer in'}, ratio {ratio}"
            out.append((label, {"scope": scope, "skip_first": skip, "ratio": ratio}))
        return out
    if name == "knobs":
        return [
            ("default (global, first skipped, 0.3, scale 1, constant lr)", {}),
            ("re-init scale 0.5", {"reinit_scale": 0.5}),
            ("re-init scale 0.25", {"reinit_scale": 0.25}),
            ("cosine lr schedule", {"schedule": "cosine"}),
            ("adam", {"optimizer": "adam"}),
            ("S2 = 5 epochs", {"s2": 5}),
            ("per-layer, ratio 0.1", {"scope": "layer", "ratio": 0.1}),
        ]
    if name == "defaults":  # the candidates for train's defaults, after full/small/knobs
        return [
            ("global, first layer skipped, 0.3, scale 1 (the authors')", {"scope": "global"}),
            ("layer, first layer skipped, 0.3, scale 1", {"scope": "layer"}),
            ("layer, first layer skipped, 0.3, scale 0.5", {"scope": "layer", "reinit_scale": 0.5}),
        ]
    raise SystemExit(f"unknown grid {name!r}: full, small, knobs, defaults")


def run_one(job: dict) -> dict:
    import torch

    from orthocli.data import prepare
    from orthocli.models import arch_spec, build_model, init_weights
    from orthocli.training import TrainConfig, set_seed, train

    torch.set_num_threads(1)
    data = prepare(job["data"], seed=job["seed"])
    arch_opts = {k: v for k, v in job["base"].items() if k in ARCH_KEYS}
    cfg_opts = {k: v for k, v in {**job["base"], **job["overrides"]}.items() if k not in ARCH_KEYS}
    cfg = TrainConfig.from_dict({**cfg_opts, "seed": job["seed"], "baseline": job["baseline"]})  # option names
    set_seed(job["seed"])
    arch = arch_spec(
        job["arch"],
        in_channels=data.in_channels,
        num_classes=data.num_classes,
        input_shape=list(data.spatial_shape),
        **arch_opts,
    )
    model = build_model(arch)
    init_weights(model, arch_opts.get("activation", "relu"))
    t0 = time.perf_counter()
    result = train(model, data, cfg)
    return {
        **{k: job[k] for k in ("label", "seed", "baseline")},
        "test_accuracy": result.test_accuracy,
        "val_accuracy": result.val_accuracy,
        "epochs": result.epochs,
        "seconds": time.perf_counter() - t0,
    }


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits", help="'digits' (shipped) or a data path orthocli reads")
    ap.add_argument("--arch", default="convnet")
    ap.add_argument("--grid", default="small")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=None, help="JSON lines of every run")
    args = ap.parse_args()
    base = dict(kv.split("=", 1) for kv in args.set)
    base = {k: parse_value(v) for k, v in base.items()}
    data = None if args.data == "digits" else args.data
    configs = grid(args.grid)
    common = {"data": data, "arch": args.arch, "base": base}
    controls = {control_key(o): {k: v for k, v in o.items() if k not in DROP_KEYS} for _, o in configs}
    jobs = [
        {**common, "label": f"control {key}", "overrides": o, "seed": s, "baseline": True}
        for key, o in controls.items()
        for s in range(args.seeds)
    ]
    jobs += [
        {**common, "label": label, "overrides": o, "seed": s, "baseline": False}
        for label, o in configs
        for s in range(args.seeds)
    ]
    t0 = time.perf_counter()
    with get_context("spawn").Pool(args.jobs) as pool:
        runs = pool.map(run_one, jobs, chunksize=1)
    elapsed = time.perf_counter() - t0
    if args.out:
        with open(args.out, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in runs)
    cmd = "python benchmarks/bench_accuracy.py " + " ".join(sys.argv[1:])
    print(f"`{cmd}`  ")
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, {args.seeds} seeds, {len(runs)} runs in {elapsed / 60:.1f} min; "
        f"data {args.data}, arch {args.arch}, base {base or 'defaults'}; test accuracy (%), mean ± sd over seeds\n"
    )
    print("| configuration | RePr | control | difference (paired) | RePr better |")
    print("| --- | --- | --- | --- | --- |")
    for label, overrides in configs:
        control = {r["seed"]: r["test_accuracy"] for r in runs if r["label"] == f"control {control_key(overrides)}"}
        ctl = list(control.values())
        mine = {r["seed"]: r["test_accuracy"] for r in runs if r["label"] == label}
        diffs = [100 * (mine[s] - control[s]) for s in mine]
        acc = [100 * v for v in mine.values()]
        sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
        print(
            f"| {label} | {statistics.mean(acc):.2f} ± {sd(acc):.2f} | {100 * statistics.mean(ctl):.2f} ± {100 * sd(ctl):.2f} "
            f"| {statistics.mean(diffs):+.2f} ± {sd(diffs):.2f} | {sum(d > 0 for d in diffs)}/{len(diffs)} |"
        )


if __name__ == "__main__":
    main()
