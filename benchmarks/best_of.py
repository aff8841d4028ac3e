"""The comparison a user makes when choosing a model: the best RePr configuration against the best
control, over every architecture and rule the runs hold (bench_accuracy.py's `--out` files, one per
architecture, on the same data and seeds). "Best" is chosen by mean *validation* accuracy, as a user
without the test set would choose; the two chosen arms are then compared on test accuracy, paired
by seed, with the 95% t-interval. Choosing by test accuracy would flatter both sides. A benchmark
report, not a test: it trains nothing.

    python benchmarks/best_of.py runs/s3_k3.jsonl runs/s3_k5.jsonl

Each configuration is named by its file's base settings (say `kernel=5`) and its grid label.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from orthocli.training.stats import paired


def configurations(paths: list[str]) -> dict[tuple[bool, str], dict[int, dict]]:
    """(is control, name) -> seed -> run, diverged runs left out (no accuracy to compare)."""
    out: dict[tuple[bool, str], dict[int, dict]] = defaultdict(dict)
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if not line.strip():
                continue
            run = json.loads(line)
            if run.get("test_accuracy") is None or run.get("diverged"):
                continue
            base = " ".join(f"{k}={v}" for k, v in sorted(run.get("base", {}).items())) or "defaults"
            name = "control" if run["baseline"] else run["label"]
            out[(bool(run["baseline"]), f"{base}: {name}")][run["seed"]] = run
    return out


def best(configs: dict, control: bool, seeds: set[int]) -> tuple[str, dict[int, dict]]:
    """The configuration of that side with the highest mean validation accuracy over `seeds`."""
    side = {name: runs for (is_control, name), runs in configs.items() if is_control == control}
    scored = {
        name: statistics.fmean(runs[s]["val_accuracy"] for s in seeds)
        for name, runs in side.items()
        if seeds <= set(runs) and all(runs[s].get("val_accuracy") is not None for s in seeds)
    }
    if not scored:
        raise SystemExit("no configuration has a validation accuracy for every common seed")
    name = max(scored, key=scored.get)
    return name, side[name]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="bench_accuracy.py --out files")
    args = ap.parse_args(argv)
    configs = configurations(args.runs)
    seeds = set.intersection(*(set(runs) for runs in configs.values()))
    if len(seeds) < 2:
        raise SystemExit("fewer than two seeds common to every configuration")
    method_name, method = best(configs, False, seeds)
    control_name, control = best(configs, True, seeds)
    order = sorted(seeds)
    p = paired([100 * method[s]["test_accuracy"] for s in order], [100 * control[s]["test_accuracy"] for s in order])
    print(f"`python benchmarks/best_of.py {' '.join(args.runs)}`  ")
    print(f"{len(order)} seeds common to all {len(configs)} configurations; best by mean validation accuracy\n")
    print("| side | configuration | test acc | val acc |")
    print("| --- | --- | --- | --- |")
    for side, name, runs in (("RePr", method_name, method), ("control", control_name, control)):
        test = statistics.fmean(100 * runs[s]["test_accuracy"] for s in order)
        val = statistics.fmean(100 * runs[s]["val_accuracy"] for s in order)
        print(f"| {side} | {name} | {test:.2f} | {val:.2f} |")
    print(
        f"\nbest RePr minus best control (test, paired by seed): {p.mean_difference:+.2f} "
        f"[{p.ci_low:+.2f}, {p.ci_high:+.2f}], RePr better {p.wins}/{p.n}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
