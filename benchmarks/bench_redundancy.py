"""Does RePr make filters less redundant? Mean filter score per layer, RePr against its control.

Reads the checkpoints `orthocli train --baseline --seeds N -o OUT.pt` wrote (OUT.seed<k>.pt, the
method, and OUT.seed<k>.baseline.pt, its same-seed control) and prints a Markdown table: each
layer's mean orthogonality score over seeds for both arms, the paired difference, and the score
Gaussian random filters of the layer's shape would have (the level of chance,
`LayerScores.chance`).

    orthocli train --data mnist1d --baseline --seeds 10 -o runs/m1d.pt
    python benchmarks/bench_redundancy.py runs/m1d.pt
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path


def pairs(out: Path) -> dict[int, tuple[Path, Path]]:
    """seed -> (method checkpoint, control checkpoint), for the seeds that have both."""
    found: dict[int, dict[str, Path]] = {}
    pattern = re.compile(re.escape(out.stem) + r"\.seed(\d+)(\.baseline)?" + re.escape(out.suffix) + "$")
    for path in out.parent.iterdir():
        m = pattern.match(path.name)
        if m:
            found.setdefault(int(m.group(1)), {})["control" if m.group(2) else "method"] = path
    return {s: (d["method"], d["control"]) for s, d in sorted(found.items()) if len(d) == 2}


def layer_means(path: Path) -> dict[str, tuple[tuple[int, ...], float, float]]:
    """Conv layer name -> (weight shape, mean filter score, random filters' score) of one checkpoint."""
    from orthocli.scoring.checkpoint_scores import score_checkpoint

    return {r.layer.name: (tuple(r.layer.weight.shape), r.mean, r.chance) for r in score_checkpoint(path).layers}


def table(out: Path) -> str:
    seeds = pairs(out)
    if not seeds:
        raise SystemExit(f"no OUT.seed<k>.pt / OUT.seed<k>.baseline.pt pairs next to {out}; run train --seeds first")
    method = {s: layer_means(m) for s, (m, _) in seeds.items()}
    control = {s: layer_means(c) for s, (_, c) in seeds.items()}
    lines = [
        f"{len(seeds)} seeds; mean filter score of each layer (0 = orthogonal), mean ± sd over seeds",
        "",
        "| layer | shape | random filters | control | RePr | RePr minus control [sd] |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    first = next(iter(method.values()))
    for name, (shape, _, chance) in first.items():
        m = [method[s][name][1] for s in seeds]
        c = [control[s][name][1] for s in seeds]
        d = [a - b for a, b in zip(m, c)]

        def ms(xs: list[float]) -> str:
            return f"{statistics.fmean(xs):.3f} ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"

        spread = f" [{statistics.stdev(d):.3f}]" if len(d) > 1 else ""
        lines.append(
            f"| {name} | {'x'.join(map(str, shape))} | {chance:.3f} | {ms(c)} | {ms(m)} "
            f"| {statistics.fmean(d):+.3f}{spread} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="the -o path given to `orthocli train --baseline --seeds N`")
    args = ap.parse_args()
    print(f"`python benchmarks/bench_redundancy.py {' '.join(sys.argv[1:])}`\n")
    print(table(args.out))


if __name__ == "__main__":
    main()
