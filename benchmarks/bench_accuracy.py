"""Does RePr beat ordinary training with the same budget? Method runs against same-seed controls.

For every seed, one control (`--baseline`: the same schedule and epochs, same data order, nothing
dropped) and one method run per configuration of the grid; the difference is paired by seed.
Prints a Markdown table (test accuracy mean +- standard deviation over seeds, the mean paired
difference with its 95% t-interval, wins, runs that diverged) with the command and machine, and
writes every run as a JSON line to --out. A run whose loss stops being finite is reported as
diverged (its arm and epoch in --out) and left out of the statistics; the others are kept.

    python benchmarks/bench_accuracy.py --data mnist1d --grid defaults --seeds 10
    python benchmarks/bench_accuracy.py --data digits --arch convnet --grid full --seeds 5
    python benchmarks/bench_accuracy.py --data benchmarks/data/mnist5k.npz --max-samples 250 --grid defaults
    python benchmarks/bench_accuracy.py --data digits --arch resnet20 --grid small --set width=8
    python benchmarks/bench_accuracy.py --data digits --grid knobs        # the investigation

`--reuse FILE` takes the runs an earlier `--out FILE` holds instead of running them again (same
label, seed, arm, data and settings): a grid can grow without re-training its controls.

`--data` takes a built-in set's name (mnist1d, digits) or a path; `--max-samples N` trains on a
stratified, seeded subset of N samples (validation split included; the test set stays whole).

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
import sys
import time
from multiprocessing import get_context

ARCH_KEYS = ("width", "depth", "kernel", "pool", "batchnorm", "activation")
# Settings that only change what the method drops and re-introduces: configurations differing only
# in these share one control per seed. Any other setting (optimizer, schedule, epochs) gets a
# control of its own with the same setting, so every comparison has the same budget.
DROP_KEYS = (
    "ratio",
    "threshold",
    "scope",
    "min_keep",
    "skip_first",
    "layers",
    "exclude",
    "reinit_scale",
    "reinit_fan_out",
)


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
            ("default (global, first skipped, 0.3, scale 1, constant lr)", {"ratio": 0.3}),
            ("re-init scale 0.5", {"reinit_scale": 0.5}),
            ("re-init scale 0.25", {"reinit_scale": 0.25}),
            ("cosine lr schedule", {"schedule": "cosine"}),
            ("adam", {"optimizer": "adam"}),
            ("S2 = 5 epochs", {"s2": 5}),
            ("per-layer, ratio 0.1", {"scope": "layer", "ratio": 0.1}),
        ]
    if name == "defaults":  # the candidates for train's defaults
        return [
            ("layer, 0.3, next layer's weights kept (the paper)", {"reinit_fan_out": "keep", "ratio": 0.3}),
            ("layer, 0.3, next layer's weights zeroed", {"reinit_fan_out": "zero", "ratio": 0.3}),
        ]
    if name == "paper":  # the paper's re-introduction alone (e.g. with --set cycles=5)
        return [("layer, 0.3, next layer's weights kept (the paper)", {"reinit_fan_out": "keep", "ratio": 0.3})]
    if name == "zero":  # the default re-introduction alone
        return [("layer, 0.3, next layer's weights zeroed", {"reinit_fan_out": "zero", "ratio": 0.3})]
    if name == "authors":  # the candidates of the previous round (README before issue 16)
        return [
            ("global, first layer skipped, 0.3, scale 1 (the authors')", {"scope": "global", "ratio": 0.3}),
            ("layer, first layer skipped, 0.3, scale 1", {"scope": "layer", "ratio": 0.3}),
            ("layer, first layer skipped, 0.3, scale 0.5", {"scope": "layer", "ratio": 0.3, "reinit_scale": 0.5}),
        ]
    if name == "fanout":  # re-introduction: the next layer's weights, with ratio and scale
        return [
            (f"fan-out {f}, ratio {r}", {"reinit_fan_out": f, "ratio": r})
            for f in ("keep", "zero")
            for r in (0.1, 0.3, 0.5)
        ]
    if name == "explore":  # round 3: one setting changed at a time from the defaults (weights zeroed)
        z = {"reinit_fan_out": "zero", "ratio": 0.3}
        return [
            ("defaults (zeroed, layer, 0.3)", z),
            ("weights kept (the paper)", {"reinit_fan_out": "keep", "ratio": 0.3}),
            ("ratio 0.1", {**z, "ratio": 0.1}),
            ("ratio 0.5", {**z, "ratio": 0.5}),
            ("global ranking", {**z, "scope": "global"}),
            ("first layer dropped from", {**z, "skip_first": False}),
            ("new filters at half norm", {**z, "reinit_scale": 0.5}),
            ("kept, new filters at half norm", {"reinit_fan_out": "keep", "ratio": 0.3, "reinit_scale": 0.5}),
            ("kept, ratio 0.1", {"reinit_fan_out": "keep", "ratio": 0.1}),
            ("S1 10, S2 5, 6 cycles", {**z, "s1": 10, "s2": 5, "cycles": 6}),
            ("S1 10, S2 10, 5 cycles", {**z, "s1": 10, "s2": 10, "cycles": 5}),
            ("kept, 5 cycles", {"reinit_fan_out": "keep", "ratio": 0.3, "cycles": 5}),
        ]
    if name == "ratio":  # round 3's new default alone (e.g. with --set cycles=5, the main job)
        return [("ratio 0.1", {"reinit_fan_out": "zero", "ratio": 0.1})]
    if name == "adaptive":  # round 3: the source's threshold embodiment at the level of chance
        return [("threshold 0.079 (random filters' expected score, 96 weights)", {"threshold": 0.079})]
    if name == "candidates":  # round 3: the defaults and the best stable variant of `explore` on MNIST-1D
        return [
            ("layer, 0.3, next layer's weights zeroed", {"reinit_fan_out": "zero", "ratio": 0.3}),
            ("ratio 0.1", {"reinit_fan_out": "zero", "ratio": 0.1}),
        ]
    raise SystemExit(f"unknown grid {name!r}: defaults, paper, zero, full, small, knobs, authors, fanout")


def run_one(job: dict) -> dict:
    import torch

    from orthocli.data import prepare
    from orthocli.errors import Diverged
    from orthocli.models import arch_spec, build_model, init_weights
    from orthocli.training import TrainConfig, set_seed, train

    torch.set_num_threads(1)
    data = prepare(job["data"], seed=job["seed"], max_samples=job["max_samples"])
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
    epochs: list[dict] = []
    try:
        result = train(model, data, cfg, callback=lambda e: epochs.append(e) if e["kind"] == "epoch" else None)
    except Diverged as e:  # the loss stopped being finite: report it, keep every other run
        return {
            **{k: job[k] for k in ("label", "seed", "baseline")},
            **run_key_fields(job),
            "diverged": str(e),
            "epochs": len(epochs) + 1,
            "seconds": time.perf_counter() - t0,
        }
    return {
        **{k: job[k] for k in ("label", "seed", "baseline")},
        **run_key_fields(job),
        "test_accuracy": result.test_accuracy,
        "val_accuracy": result.val_accuracy,
        "epochs": result.epochs,
        "seconds": time.perf_counter() - t0,
        "dropped": [sum((c.get("dropped") or {}).values()) for c in result.cycles],  # filters, per cycle
        "max_loss_jump": max((b["loss"] / a["loss"] for a, b in zip(epochs, epochs[1:]) if a["loss"] > 0), default=1.0),
    }


def run_key_fields(job: dict) -> dict:
    """What makes a run: with label, seed and arm, enough to reuse it from an earlier --out file."""
    return {"data": job["data"], "max_samples": job["max_samples"], "arch": job["arch"], "base": job["base"]}


def run_key(run: dict) -> str:
    return json.dumps([run["label"], run["seed"], run["baseline"], run_key_fields(run)], sort_keys=True)


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="mnist1d", help="a built-in set (mnist1d, digits) or a data path orthocli reads")
    ap.add_argument("--max-samples", type=int, default=None, help="train on a stratified subset of this many samples")
    ap.add_argument("--arch", default="convnet")
    ap.add_argument("--grid", default="defaults")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=None, help="JSON lines of every run")
    ap.add_argument(
        "--reuse",
        action="append",
        default=[],
        metavar="FILE",
        help="an earlier --out file: its runs of the same label, seed, arm, data and settings are not run again"
        " (training is deterministic on the CPU, so a rerun gives the same figures)",
    )
    args = ap.parse_args()
    base = dict(kv.split("=", 1) for kv in args.set)
    base = {k: parse_value(v) for k, v in base.items()}
    configs = grid(args.grid)
    common = {"data": args.data, "max_samples": args.max_samples, "arch": args.arch, "base": base}
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
    earlier = {}
    for path in args.reuse:
        with open(path) as f:
            for line in f:
                run = json.loads(line)
                if "data" in run:  # lines written before runs recorded their data and settings are not reused
                    earlier[run_key(run)] = run
    reused = [earlier[run_key(j)] for j in jobs if run_key(j) in earlier]
    jobs = [j for j in jobs if run_key(j) not in earlier]
    t0 = time.perf_counter()
    runs = list(reused)
    # written as runs finish: an interrupted grid keeps them
    with open(args.out or os.devnull, "w") as out, get_context("spawn").Pool(args.jobs) as pool:
        for run in reused:
            out.write(json.dumps(run) + "\n")
        for run in pool.imap_unordered(run_one, jobs, chunksize=1):
            runs.append(run)
            out.write(json.dumps(run) + "\n")
            out.flush()
    elapsed = time.perf_counter() - t0
    cmd = "python benchmarks/bench_accuracy.py " + " ".join(sys.argv[1:])
    print(f"`{cmd}`  ")
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, {args.seeds} seeds, {len(runs) - len(reused)} runs in "
        f"{elapsed / 60:.1f} min" + (f" ({len(reused)} more reused from --reuse)" if reused else "") + "; "
        f"data {args.data}"
        + (f" ({args.max_samples} samples)" if args.max_samples else "")
        + f", arch {args.arch}, base {base or 'defaults'}; test accuracy (%), mean ± sd over seeds; gain: "
        "mean paired difference (RePr minus its seed's control) with its 95% t-interval\n"
    )
    print(table(runs, configs))


def table(runs: list[dict], configs: list[tuple[str, dict]]) -> str:
    from orthocli.stats import paired

    lines = [
        "| configuration | RePr | control | gain [95% CI] | RePr better | diverged |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, overrides in configs:
        control = {r["seed"]: r for r in runs if r["label"] == f"control {control_key(overrides)}"}
        mine = {r["seed"]: r for r in runs if r["label"] == label}
        diverged = [
            f"{'control' if r['baseline'] else 'RePr'} seed {r['seed']} epoch {r['epochs']}"
            for r in (*control.values(), *mine.values())
            if "diverged" in r
        ]
        seeds = sorted(
            s for s in mine if "diverged" not in mine[s] and "diverged" not in control.get(s, {"diverged": 1})
        )
        if not seeds:
            lines.append(f"| {label} | - | - | - | - | {'; '.join(diverged) or '-'} |")
            continue
        p = paired([100 * mine[s]["test_accuracy"] for s in seeds], [100 * control[s]["test_accuracy"] for s in seeds])
        ci = f"[{p.ci_low:+.2f}, {p.ci_high:+.2f}]" if p.ci_low is not None else ""
        lines.append(
            f"| {label} | {p.method.mean:.2f} ± {p.method.sd:.2f} | {p.control.mean:.2f} ± {p.control.sd:.2f} "
            f"| {p.mean_difference:+.2f} {ci} | {p.wins}/{p.n} | {'; '.join(diverged) or 0} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
