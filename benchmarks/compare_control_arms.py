"""Do the product's three arms agree with the benchmark's ranking ablation? Runs `orthocli train
--baseline --control random --seeds N` on a set and `bench_accuracy.py --grid ranking-matched` on
the same seeds, and compares their runs seed by seed (control, RePr, random drops): training on the
CPU with one thread is deterministic, so they must be identical, run for run. Prints a Markdown
table of both and the product's verdict; exits 1 when a run differs.

    python benchmarks/compare_control_arms.py --data mnist1d --max-samples 250 --seeds 10
    python benchmarks/compare_control_arms.py --data digits --max-samples 150 --seeds 2 \\
        --set s1=2 --set s2=1 --set cycles=2 --set max_epochs=6 --set width=8     # a few seconds

`--bench FILE` reads the bench's runs from an earlier `--out FILE` of the same grid, data and
settings instead of running it; `--work DIR` keeps the checkpoints and both JSON documents there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).parent.parent
BENCH = ROOT / "benchmarks" / "bench_accuracy.py"
GRID = "ranking-matched"
ARMS = ("baseline", "repr", "random")  # the product's arms, in the table's order
NAMES = {"baseline": "control", "repr": "RePr", "random": "random drops"}


def flags(settings: dict) -> list[str]:
    """A bench `--set key=value` as `orthocli train` flags (the keys are option names)."""
    out = []
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else f"--no-{key.replace('_', '-')}")
        else:
            out += [flag, str(value)]
    return out


def bench_runs(args, settings: list[str], work: Path) -> list[dict]:
    if args.bench:
        path = Path(args.bench)
    else:
        path = work / "bench.jsonl"
        cmd = [sys.executable, str(BENCH), "--grid", GRID, "--data", args.data, "--seeds", str(args.seeds)]
        cmd += ["--jobs", str(args.jobs), "--out", str(path)]
        cmd += [x for kv in settings for x in ("--set", kv)]
        cmd += ["--max-samples", str(args.max_samples)] if args.max_samples else []
        print("$ python benchmarks/bench_accuracy.py " + " ".join(cmd[2:]), file=sys.stderr)
        if subprocess.run(cmd, cwd=ROOT, stdout=sys.stderr).returncode != 0:
            raise SystemExit("bench_accuracy.py failed (see above)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def product_doc(args, settings: dict, work: Path) -> dict:
    cmd = [sys.executable, "-m", "orthocli", "train", "--data", args.data, "--baseline", "--control", "random"]
    cmd += ["--seeds", str(args.seeds), "--threads", "1", "--json", "-o", str(work / "arms.pt"), "--force"]
    cmd += ["--max-samples", str(args.max_samples)] if args.max_samples else []
    cmd += flags(settings)
    print("$ orthocli " + " ".join(cmd[3:]), file=sys.stderr)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"orthocli train exited with {done.returncode}")
    (work / "product.json").write_text(done.stdout)
    return json.loads(done.stdout)


def by_seed(runs: list[dict], bench) -> dict[str, dict[int, dict]]:
    """The bench's runs of the grid as the product's arms: role -> seed -> run."""
    (method_label, overrides), (random_label, _) = bench.grid(GRID)
    labels = {"baseline": f"control {bench.control_key(overrides)}", "repr": method_label, "random": random_label}
    return {role: {r["seed"]: r for r in runs if r["label"] == label} for role, label in labels.items()}


def compare(doc: dict, bench_arms: dict[str, dict[int, dict]]) -> tuple[list[str], int]:
    """The Markdown table (test accuracy, %; val in brackets) and how many runs differ."""
    lines = [
        "| seed | " + " | ".join(f"{NAMES[a]}: product / bench" for a in ARMS) + " | identical |",
        "| --- | " + " | ".join("---" for _ in ARMS) + " | --- |",
    ]
    differ = 0

    def figure(run: dict | None) -> str:
        if run is None:
            return "missing"
        if "diverged" in run:
            return "diverged"
        val = run.get("val_accuracy")
        return f"{100 * run['test_accuracy']:.2f} ({'-' if val is None else f'{100 * val:.2f}'})"

    for row in doc["seeds"]:
        seed, cells, same = row["seed"], [], True
        for arm in ARMS:
            mine, theirs = row.get(arm), bench_arms[arm].get(seed)
            equal = (
                mine is not None
                and theirs is not None
                and all(mine.get(k) == theirs.get(k) for k in ("test_accuracy", "val_accuracy"))
                and [c["dropped"] for c in mine.get("cycles", [])] == theirs.get("dropped_layers", [])
            )
            same &= equal
            cells.append(f"{figure(mine)} / {figure(theirs)}")
        differ += not same
        lines.append(f"| {seed} | " + " | ".join(cells) + f" | {'yes' if same else '**no**'} |")
    return lines, differ


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="mnist1d")
    ap.add_argument("--max-samples", type=int, default=None)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="the bench's processes")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="for both (option names)")
    ap.add_argument("--bench", default=None, help="an earlier bench --out of the same grid, data and settings")
    ap.add_argument("--work", default=None, help="keep the checkpoints and documents here")
    args = ap.parse_args()

    sys.path.insert(0, str(BENCH.parent))
    import bench_accuracy as bench

    settings = {k: bench.parse_value(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        runs = bench_runs(args, args.set, work)
        doc = product_doc(args, settings, work)
    lines, differ = compare(doc, by_seed(runs, bench))
    cmd = "python benchmarks/compare_control_arms.py " + " ".join(sys.argv[1:])
    print(f"`{cmd}`  ")
    print(f"{len(doc['seeds'])} seeds; test accuracy % (val accuracy %), product (`orthocli train`) / bench\n")
    print("\n".join(lines))
    print(f"\nProduct's verdict: {doc['summary']['verdict']}")
    print(f"\n{'All runs identical.' if not differ else f'{differ} seed(s) differ.'}")
    raise SystemExit(1 if differ else 0)


if __name__ == "__main__":
    main()
