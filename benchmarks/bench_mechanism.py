"""What the method changes in a network, read from the runs bench_accuracy.py wrote (`--out`): for each
configuration, averaged over its seeds, each candidate conv layer's mean score against the score of
random filters of its shape (1.00 = chance) at the points of the schedule that matter, and the gap
between training and validation accuracy at the end (how much the network overfits). A benchmark
report, not a test: it trains nothing.

    python benchmarks/bench_mechanism.py runs/mnist1d.jsonl [more.jsonl ...] [--label TEXT]

Points: "start" (after the first epoch), "first drop" (the last standard epoch before cycle 1's
drop: what the drop rule sees), "cycle c" (the last epoch of cycle c's sub-network, before its
re-introduction), "end" (the last epoch). Scores are over the layer's live filters (a dropped
filter's zero weights would score 1).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict


def milestones(trace: list) -> dict[str, int]:
    """Epoch index of each point of the schedule in one run's trace (phase per epoch)."""
    points = {"start": 0}
    phases = [t[0] for t in trace]
    subnet_starts = [i for i, p in enumerate(phases) if p == "subnet" and (i == 0 or phases[i - 1] != "subnet")]
    if subnet_starts and subnet_starts[0] > 0:
        points["first drop"] = subnet_starts[0] - 1
    for c, start in enumerate(subnet_starts, 1):
        end = start
        while end + 1 < len(phases) and phases[end + 1] == "subnet":
            end += 1
        points[f"cycle {c}"] = end
    points["end"] = len(trace) - 1
    return points


def chance_of(run: dict) -> dict[str, float]:
    """Each layer's chance level: recorded with the run, or (runs written before it was) the
    default ConvNet's for the layers after the first (32 filters of 32 x kernel weights; kernel x
    kernel on the 2-D sets). The first layer's filters read the data's channels, which such a run
    does not record, so it has no chance level and is left out."""
    if "chance" in run:
        return run["chance"]
    from orthocli.method.orthogonality import chance_score

    kernel = run.get("base", {}).get("kernel", 3)
    two_d = run["data"] == "digits" or "mnist5k" in run["data"]
    fan_in = 32 * kernel * (kernel if two_d else 1)
    return {layer: chance_score(fan_in, 32) for layer in list(run["trace"][0][3])[1:]}


def summarise(runs: list[dict]) -> dict:
    """Per label: per point, per layer, the mean of (layer mean / chance) over seeds; the end gap."""
    by_label = defaultdict(list)
    for r in runs:
        if "trace" in r and "diverged" not in r:
            by_label[r["label"]].append(r)
    out = {}
    for label, rs in by_label.items():
        ratios: dict = defaultdict(lambda: defaultdict(list))
        gaps = []
        for r in rs:
            for point, i in milestones(r["trace"]).items():
                for layer, mean in r["trace"][i][3].items():
                    chance = chance_of(r).get(layer)
                    if chance:
                        ratios[point][layer].append(mean / chance)
            last = r["trace"][-1]
            if last[2] is not None:
                gaps.append(last[1] - last[2])
        out[label] = {
            "seeds": len(rs),
            "ratios": {p: {layer: statistics.fmean(v) for layer, v in ls.items()} for p, ls in ratios.items()},
            "gap": statistics.fmean(gaps) if gaps else None,
            "test": statistics.fmean(r["test_accuracy"] for r in rs),
        }
    return out


def table(summary: dict, layers: list[str]) -> str:
    points = ["start", "first drop", "cycle 1", "cycle 2", "cycle 3", "end"]
    head = "| configuration | seeds | test acc | train - val (end) | " + " | ".join(
        f"{layer.split('.')[-1]} @ {p}" for p in points for layer in layers
    )
    lines = [head + " |", "|" + " --- |" * (4 + len(points) * len(layers))]
    for label, s in summary.items():
        cells = [
            f"{s['ratios'].get(p, {}).get(layer):.2f}" if s["ratios"].get(p, {}).get(layer) is not None else "-"
            for p in points
            for layer in layers
        ]
        gap = "-" if s["gap"] is None else f"{100 * s['gap']:.1f}"
        lines.append(f"| {label} | {s['seeds']} | {100 * s['test']:.2f} | {gap} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--label", default=None, help="only configurations whose label contains this text")
    args = ap.parse_args()
    runs = []
    for name in args.files:
        with open(name) as f:
            runs += [json.loads(line) for line in f]
    if args.label:
        runs = [r for r in runs if args.label in r["label"] or r["baseline"]]
    summary = summarise(runs)
    layers = sorted({layer for s in summary.values() for p in s["ratios"].values() for layer in p})
    print(f"`python benchmarks/bench_mechanism.py {' '.join(args.files)}`  ")
    print("each layer's mean score / random filters' (1.00 = chance), mean over seeds\n")
    print(table(summary, layers))


if __name__ == "__main__":
    main()
