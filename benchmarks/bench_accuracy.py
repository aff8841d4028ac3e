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

Grids (`GRIDS` below; an unknown name lists them): each names a set of configurations, and
every label names the settings it changes, so earlier rounds' tables stay reproducible. `--set
key=value` changes the base configuration of every run (TrainConfig fields, or
width/depth/batchnorm/activation).

A configuration with `"counts": "method"` is a matched control: its job first trains the same
configuration with the method's ranking, then this one with `train(counts=...)`, dropping in each
cycle exactly the per-layer counts the method run dropped: the computation of `orthocli train
--baseline --control random` (`--grid ranking-matched`; `benchmarks/compare_control_arms.py` checks
the two agree run for run). `--grid criteria` does it for every criterion (`train --control
random,l1,taylor,...`) under the default rule and the paper's; the commands are in docs/results.md
("Which criterion?"). The matched job reports the method run it matched (`method_test_accuracy`),
so each criterion is compared with the method seed by seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import platform
import sys
import time
from multiprocessing import get_context

from orthocli.method.layer_scores import score_layers
from orthocli.network.layers import convs_from_module

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
    "ranking",
    "counts",
)


def control_key(overrides: dict) -> str:
    return json.dumps({k: v for k, v in sorted(overrides.items()) if k not in DROP_KEYS})


_Z = {"reinit_fan_out": "zero"}  # the next layer's weights for a re-introduced filter zeroed (round 2 on)
_KEPT_03 = {"reinit_fan_out": "keep", "ratio": 0.3}  # the paper's re-introduction, its ratio
_ROUND1 = {"scope": "global", "reinit_fan_out": "keep", "ratio": 0.3}  # round 1's defaults
# train --control random's arm: the default rule's counts, cycle by cycle, from the method run
MATCHED = {"ratio": None, "ranking": "random", "counts": "method"}


# issue 35: every criterion with the method's counts (`train --control <criterion>`), under the
# default rule and the paper's; bn-scale needs a BatchNorm after each conv, so its runs (and their
# control and the method run they match) have one
CRITERIA = ("random", "least", "l1", "bn-scale", "taylor", "activation")
_RULES = (("excess over chance", {"ratio": None, "threshold": None}), ("the paper's rule", _KEPT_03))


def _criteria() -> list[tuple[str, dict]]:
    out = []
    for rule, settings in _RULES:
        out.append((f"{rule}, orthogonality (the method)", settings))
        for name in CRITERIA:
            bn = {"batchnorm": True} if name == "bn-scale" else {}
            label = f"{rule}, {name} filters, the method's counts" + (", BatchNorm" if bn else "")
            out.append((label, {**settings, **bn, "ranking": name, "counts": "method"}))
    return out


def _full(ratios: tuple[float, ...]) -> list[tuple[str, dict]]:
    return [
        (
            f"{scope}, {'first layer skipped' if skip else 'first layer in'}, ratio {ratio}",
            {"scope": scope, "skip_first": skip, "ratio": ratio, "reinit_fan_out": "keep"},
        )
        for scope, skip, ratio in itertools.product(("global", "layer"), (True, False), ratios)
    ]


# name -> (what it asks, its configurations). Every label names the settings that matter, so a
# table stays true when train's defaults move; what a configuration leaves out is train's default.
GRIDS: dict[str, tuple[str, list[tuple[str, dict]]]] = {
    "full": (
        "scope x first layer x ratio {0.1, 0.3, 0.5}, next layer's weights kept (round 1)",
        _full((0.1, 0.3, 0.5)),
    ),
    "small": ("scope x first layer at ratio 0.3, next layer's weights kept (round 1)", _full((0.3,))),
    "knobs": (
        "round 1's defaults with one setting changed at a time",
        [
            ("global, first skipped, 0.3, kept, scale 1, constant lr (round 1)", _ROUND1),
            ("re-init scale 0.5", {**_ROUND1, "reinit_scale": 0.5}),
            ("re-init scale 0.25", {**_ROUND1, "reinit_scale": 0.25}),
            ("cosine lr schedule", {**_ROUND1, "schedule": "cosine"}),
            ("adam", {**_ROUND1, "optimizer": "adam"}),
            ("S2 = 5 epochs", {**_ROUND1, "s2": 5}),
            ("per-layer, ratio 0.1", {**_ROUND1, "scope": "layer", "ratio": 0.1}),
        ],
    ),
    "authors": (
        "the authors' global ranking against per-layer, next layer's weights kept (round 1)",
        [
            ("global, first layer skipped, 0.3, scale 1 (the authors')", {**_ROUND1}),
            ("layer, first layer skipped, 0.3, scale 1", {**_ROUND1, "scope": "layer"}),
            ("layer, first layer skipped, 0.3, scale 0.5", {**_ROUND1, "scope": "layer", "reinit_scale": 0.5}),
        ],
    ),
    "defaults": (
        "the next layer's weights kept or zeroed at 30% (round 2)",
        [
            ("layer, 0.3, next layer's weights kept (the paper)", _KEPT_03),
            ("layer, 0.3, next layer's weights zeroed", {**_Z, "ratio": 0.3}),
        ],
    ),
    "paper": ("the paper's re-introduction alone", [("layer, 0.3, next layer's weights kept (the paper)", _KEPT_03)]),
    "zero": (
        "zeroed re-introduction at 30% alone",
        [("layer, 0.3, next layer's weights zeroed", {**_Z, "ratio": 0.3})],
    ),
    "fanout": (
        "kept or zeroed x ratio {0.1, 0.3, 0.5}",
        [
            (f"fan-out {f}, ratio {r}", {"reinit_fan_out": f, "ratio": r})
            for f in ("keep", "zero")
            for r in (0.1, 0.3, 0.5)
        ],
    ),
    "explore": (
        "round 3: one setting changed at a time from zeroed, layer, 0.3",
        [
            ("defaults (zeroed, layer, 0.3)", {**_Z, "ratio": 0.3}),
            ("weights kept (the paper)", _KEPT_03),
            ("ratio 0.1", {**_Z, "ratio": 0.1}),
            ("ratio 0.5", {**_Z, "ratio": 0.5}),
            ("global ranking", {**_Z, "ratio": 0.3, "scope": "global"}),
            ("first layer dropped from", {**_Z, "ratio": 0.3, "skip_first": False}),
            ("new filters at half norm", {**_Z, "ratio": 0.3, "reinit_scale": 0.5}),
            ("kept, new filters at half norm", {**_KEPT_03, "reinit_scale": 0.5}),
            ("kept, ratio 0.1", {**_KEPT_03, "ratio": 0.1}),
            ("S1 10, S2 5, 6 cycles", {**_Z, "ratio": 0.3, "s1": 10, "s2": 5, "cycles": 6}),
            ("S1 10, S2 10, 5 cycles", {**_Z, "ratio": 0.3, "s1": 10, "s2": 10, "cycles": 5}),
            ("kept, 5 cycles", {**_KEPT_03, "cycles": 5}),
        ],
    ),
    "candidates": (
        "round 3: 30% against 10% dropped, zeroed",
        [
            ("layer, 0.3, next layer's weights zeroed", {**_Z, "ratio": 0.3}),
            ("ratio 0.1", {**_Z, "ratio": 0.1}),
        ],
    ),
    "ratio": ("round 3's default (10%, zeroed) alone", [("ratio 0.1", {**_Z, "ratio": 0.1})]),
    "adaptive-rule": (
        "round 4: each layer's share of redundancy above chance, at most 30% (no ratio; the default from round 5)",
        [("excess over chance", {"ratio": None, "threshold": None})],
    ),
    "setup": (
        "round 5: what separates a minimal reference set-up from orthocli's, one change at a time, each"
        " with its own control (the adaptive rule)",
        [
            ("excess over chance", {"ratio": None, "threshold": None}),  # the defaults, as in adaptive-rule
            ("no weight decay", {"ratio": None, "weight_decay": 0.0}),
            ("kernel 5", {"ratio": None, "kernel": 5}),
            (
                "no validation split: every sample trained on, fixed epochs, last weights",
                {"ratio": None, "val_fraction": 0.0},
            ),
        ],
    ),
    "ranking": (
        "round 6: does the orthogonality ranking matter? The default rule's count per layer, filters chosen"
        " by rank, at random, or least redundant first",
        [
            ("excess over chance", {"ratio": None, "threshold": None}),  # the defaults, as in adaptive-rule
            ("excess over chance, random filters", {"ratio": None, "ranking": "random"}),
            ("excess over chance, least redundant filters", {"ratio": None, "ranking": "least"}),
        ],
    ),
    "ranking-matched": (
        "round 8: the ranking ablation as `train --control random` runs it: random filters, as many per layer"
        " as the method run dropped in each cycle (the default rule)",
        [
            ("excess over chance", {"ratio": None, "threshold": None}),  # the defaults, as in adaptive-rule
            ("excess over chance, random filters, the method's counts", MATCHED),
        ],
    ),
    "criteria": (
        "issue 35: which criterion? Each of random, least, l1, bn-scale, taylor, activation choosing as many"
        " filters per layer as the method run dropped in each cycle, under the default rule and the paper's",
        _criteria(),
    ),
    "ranking-ratio": (
        "round 6: the ranking ablation for round 4's rule, 10% of each layer",
        [
            ("ratio 0.1", {**_Z, "ratio": 0.1}),  # as in the ratio grid
            ("ratio 0.1, random filters", {**_Z, "ratio": 0.1, "ranking": "random"}),
            ("ratio 0.1, least redundant filters", {**_Z, "ratio": 0.1, "ranking": "least"}),
        ],
    ),
    "rules": (
        "round 7: the default rule and the paper's 30%, the next layer's weights zeroed or kept",
        [
            ("excess over chance", {"ratio": None, "threshold": None}),
            ("excess over chance, next layer's weights kept", {"ratio": None, "reinit_fan_out": "keep"}),
            ("layer, 0.3, next layer's weights zeroed", {**_Z, "ratio": 0.3}),
            ("layer, 0.3, next layer's weights kept (the paper)", _KEPT_03),
        ],
    ),
    "two-rules": (
        "round 7: the default rule and the paper's (30% of each layer, the next layer's weights kept)",
        [
            ("excess over chance", {"ratio": None, "threshold": None}),
            ("layer, 0.3, next layer's weights kept (the paper)", _KEPT_03),
        ],
    ),
    "paper-ranking": (
        "round 7: does the ranking matter under the paper's rule? 30% of each layer, the next layer's weights kept,"
        " filters chosen by rank or at random",
        [
            ("layer, 0.3, next layer's weights kept (the paper)", _KEPT_03),
            ("the paper's rule, random filters", {**_KEPT_03, "ranking": "random"}),
        ],
    ),
    "where": (
        "round 7: the paper's rule on one layer at a time (where do the drops pay?)",
        [
            ("layer, 0.3, next layer's weights kept (the paper)", _KEPT_03),
            ("the paper's rule, conv2 only", {**_KEPT_03, "layers": ["features.conv2"]}),
            ("the paper's rule, conv3 only", {**_KEPT_03, "layers": ["features.conv3"]}),
        ],
    ),
    "adaptive": (
        "the source's threshold embodiment at chance level",
        [("threshold 0.079 (random filters' expected score, 96 weights)", {"threshold": 0.079})],
    ),
}


def grid(name: str) -> list[tuple[str, dict]]:
    if name not in GRIDS:
        known = "; ".join(f"{n}: {what}" for n, (what, _) in GRIDS.items())
        raise SystemExit(f"unknown grid {name!r}; the grids are {known}")
    return GRIDS[name][1]


def run_one(job: dict) -> dict:
    import torch

    from orthocli.config import TrainConfig
    from orthocli.data import prepare
    from orthocli.errors import Diverged
    from orthocli.network.models import arch_spec, build_model, init_weights
    from orthocli.seeding import set_seed
    from orthocli.training.loop import train

    torch.set_num_threads(1)
    # a configuration may change the architecture or the validation split too (with its own control)
    settings = {**job["base"], **job["overrides"]}  # "ranking": which filters a cycle drops (ReprConfig.ranking)
    matched = settings.pop("counts", None) == "method"  # a control matched to the method run's counts
    arch_opts = {k: v for k, v in settings.items() if k in ARCH_KEYS}
    cfg_opts = {k: v for k, v in settings.items() if k not in ARCH_KEYS}
    cfg = TrainConfig.from_dict({**cfg_opts, "seed": job["seed"], "baseline": job["baseline"]})  # option names
    data = prepare(
        job["data"], seed=job["seed"], max_samples=job["max_samples"], val_fraction=cfg.val_fraction, in_memory=True
    )

    def new_model():
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
        return model

    counts, method_run = None, {}
    if matched:  # the method run first, as `train --control random` trains it: its counts, cycle by cycle
        method_cfg = dataclasses.replace(cfg, ranking="orthogonality")
        try:
            method = train(new_model(), data, method_cfg)
        except Diverged as e:
            return {
                **{k: job[k] for k in ("label", "seed", "baseline")},
                **run_key_fields(job),
                "diverged": f"the method run it matches: {e}",
                "epochs": 0,
                "seconds": 0.0,
            }
        counts = {int(c["cycle"]): dict(c.get("dropped") or {}) for c in method.cycles}
        method_run = {"method_test_accuracy": method.test_accuracy, "method_val_accuracy": method.val_accuracy}
    model = new_model()
    t0 = time.perf_counter()
    epochs: list[dict] = []
    trace: list = []  # per epoch: phase, train and val accuracy, each candidate layer's mean score (live filters)

    def on_event(event: dict) -> None:
        if event["kind"] == "epoch":
            epochs.append(event)
            # the candidate layers' means as the epoch ended, before a drop or re-introduction made then
            means = {name: round(v, 5) for name, v in event["layer_means"].items()}
            trace.append([event["phase"], round(event["train_acc"], 4), _rounded(event["val_acc"]), means])

    try:
        result = train(model, data, cfg, callback=on_event, counts=counts)
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
        "dropped_layers": [c.get("dropped") or {} for c in result.cycles],  # per cycle, per layer
        "chance": {s.layer.name: round(s.chance, 5) for s in score_layers(convs_from_module(model))},
        "trace": trace,
        "max_loss_jump": max((b["loss"] / a["loss"] for a, b in zip(epochs, epochs[1:]) if a["loss"] > 0), default=1.0),
        **method_run,  # a matched control: the accuracies of the method run whose counts it took
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


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
    from orthocli.training.stats import paired

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
