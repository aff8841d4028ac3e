"""Streamed against in-memory training data (a benchmark, not a test): peak memory and throughput
of one training epoch on a generated folder of 64x64 colour PNGs. Prints, measured in this one run:

1. peak RSS of a streamed epoch for two image counts (goal: it does not grow with the count, and
   stays under 1 GiB for 20,000 images), and of the in-memory path (`--in-memory`, the whole folder
   decoded into one tensor) on the smaller folder, which fits;
2. throughput of a streamed training epoch with `--workers` loader processes against the
   in-memory path, on `--samples` images of the smaller folder (goal: >= 0.9).

    .venv/bin/python benchmarks/bench_streaming.py [--root /tmp/orthocli-stream-bench]
        [--counts 5000,20000] [--workers 2] [--width 32] [--samples 2000] [--repeats 3]
        [--only memory|throughput]

The folder is generated once under --root (the smaller count is hard links to the first images)
and reused. Memory: each of the three is one `orthocli train` epoch (--cycles 0 --max-epochs 1
--val-fraction 0 --threads 1) in a fresh process; peak RSS is that process's own (ru_maxrss) and,
separately, its largest loader worker's; setup (listing, header checks, statistics, or decoding
everything) is shown beside the epoch. Throughput: training epochs of both kinds in this one
process, alternating, --repeats of each; the ratio of the best epochs and the median ratio of
adjacent pairs are printed, so other load on the machine counts less.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CLASSES = 10


def make_folder(root: Path, count: int) -> Path:
    """`count` 64x64 colour PNGs in CLASSES class folders: a class-coloured gradient plus noise."""
    import numpy as np
    from PIL import Image

    folder = root / f"images{count}"
    done = folder / ".complete"
    if done.exists():
        return folder
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    for k in range(count):
        c = k % CLASSES
        d = folder / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        angle = 2 * np.pi * c / CLASSES
        ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / 64
        base = np.stack([ramp * (c + 1) / CLASSES, ramp, 1 - ramp], -1) * 160 + 40
        img = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"{k:06d}.png")
    done.touch()
    return folder


def link_subset(full: Path, count: int) -> Path:
    """The first `count` images of `full` (by index), as hard links in a folder of their own."""
    folder = full.parent / f"images{count}"
    if (folder / ".complete").exists():
        return folder
    for k in range(count):
        name = f"class{k % CLASSES}/{k:06d}.png"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        if not (folder / name).exists():
            os.link(full / name, folder / name)
    (folder / ".complete").touch()
    return folder


def one_epoch(folder: Path, out: Path, workers: int, width: int, in_memory: bool) -> dict:
    """One epoch of `orthocli train` in a fresh process: its peak RSS, epoch seconds, setup seconds."""
    code = (
        "import json, resource, sys, time\n"
        "t0 = time.perf_counter()\n"
        "from orthocli.cli import app\n"
        "try:\n"
        "    app(sys.argv[1:], standalone_mode=False)\n"
        "finally:\n"
        "    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "    print(json.dumps({'rss_kib': me, 'worker_rss_kib': kids, 'wall': time.perf_counter() - t0}),"
        " file=sys.stderr)\n"
    )
    args = ["train", "--data", str(folder), "--cycles", "0", "--max-epochs", "1", "--val-fraction", "0"]
    args += ["--width", str(width), "--threads", "1", "--device", "cpu", "--json", "-o", str(out), "--force"]
    args += ["--workers", str(workers)] + (["--in-memory"] if in_memory else [])
    env = {**os.environ, "NO_COLOR": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"orthocli train failed:\n{res.stderr[-2000:]}")
    json.loads(res.stdout)  # the run printed its one JSON document: it finished
    usage = json.loads(res.stderr.strip().splitlines()[-1])
    epoch = doc_epoch_seconds(out)
    count = sum(1 for _ in folder.glob("class*/*.png"))
    return {
        "rss_mib": usage["rss_kib"] / 1024,
        "worker_rss_mib": usage["worker_rss_kib"] / 1024,
        "epoch_s": epoch,
        "setup_s": usage["wall"] - epoch,
        "images_per_s": count / epoch,
    }


def doc_epoch_seconds(out: Path) -> float:
    import torch

    saved = torch.load(out, map_location="cpu", weights_only=True)
    return float(saved["history"][0]["seconds"])


def throughput(folder: Path, samples: int, workers: int, width: int, repeats: int) -> dict[str, list[float]]:
    """Images per second of one training epoch over `samples` images of `folder`, in memory and
    streamed, in this process (1 torch thread), alternating, `repeats` of each."""
    import torch

    from orthocli.data import prepare
    from orthocli.network.models import arch_spec, build_model
    from orthocli.training.loop import TrainConfig, _optimizer, _train_epoch, loss_fn, set_seed
    from orthocli.training.runtime import Runtime

    torch.set_num_threads(1)
    kw = dict(val_fraction=0, max_samples=samples, workers=workers)
    splits = {"in-memory": prepare(folder, in_memory=True, **kw), "streamed": prepare(folder, **kw)}
    cfg, rt = TrainConfig(cycles=0, max_epochs=1, val_fraction=0), Runtime(torch.device("cpu"))
    rates: dict[str, list[float]] = {name: [] for name in splits}
    for _ in range(repeats):
        for name, data in splits.items():
            set_seed(0)
            spec = arch_spec("convnet", in_channels=3, num_classes=CLASSES, input_shape=[64, 64], width=width)
            model = build_model(spec)
            t0 = time.perf_counter()
            _train_epoch(model, _optimizer(model, cfg), loss_fn("ce"), data.train, cfg, 0, rt)
            rate = len(data.train) / (time.perf_counter() - t0)
            print(f"  throughput {name}: {rate:.0f} images/s", file=sys.stderr)
            rates[name].append(rate)
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path("/tmp/orthocli-stream-bench"))
    ap.add_argument("--counts", default="5000,20000", help="two image counts, the smaller one fits in memory")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--samples", type=int, default=2000, help="images per throughput epoch")
    ap.add_argument("--repeats", type=int, default=3, help="throughput epochs of each kind")
    ap.add_argument("--only", choices=("memory", "throughput"), help="run one of the two measurements")
    args = ap.parse_args()
    small, large = sorted(int(c) for c in args.counts.split(","))
    args.root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    full = make_folder(args.root, large)
    part = link_subset(full, small)
    print(f"folders ready in {time.perf_counter() - t0:.0f} s: {full} ({large}), {part} ({small})", file=sys.stderr)
    out = args.root / "model.pt"

    rows = {}
    for name, folder, in_memory in (
        ()
        if args.only == "throughput"
        else (
            (f"streamed {small}", part, False),
            (f"streamed {large}", full, False),
            (f"in-memory {small}", part, True),
        )
    ):
        rows[name] = one_epoch(folder, out, args.workers, args.width, in_memory)
        print(f"  {name}: {json.dumps({k: round(v, 3) for k, v in rows[name].items()})}", file=sys.stderr)
    rates = {}
    if args.only != "memory":
        rates = throughput(part, min(args.samples, small), args.workers, args.width, args.repeats)

    if rows:
        print(
            f"one epoch of orthocli train, convnet width {args.width}, batch 64, 1 torch thread, --workers {args.workers}"
        )
        print(f"{'':18} {'peak RSS':>10} {'worker RSS':>11} {'epoch s':>8} {'setup s':>8}")
        for name, r in rows.items():
            worker = f"{r['worker_rss_mib']:.0f} MiB" if "streamed" in name else "-"
            print(f"{name:18} {r['rss_mib']:>6.0f} MiB {worker:>11} {r['epoch_s']:>8.1f} {r['setup_s']:>8.1f}")
        s_small, s_large, mem = rows[f"streamed {small}"], rows[f"streamed {large}"], rows[f"in-memory {small}"]
        print(
            f"streamed peak RSS, {large} vs {small} images: {s_large['rss_mib'] / s_small['rss_mib']:.2f}x"
            f" ({s_large['rss_mib']:.0f} MiB; goal: ~1x, under 1024 MiB)"
        )
        print(f"in-memory vs streamed peak RSS, {small} images: {mem['rss_mib'] / s_small['rss_mib']:.2f}x")
    if rates:
        mem, streamed = rates["in-memory"], rates["streamed"]
        pairs = sorted(b / a for a, b in zip(mem, streamed))  # each streamed epoch against the one just before it
        print(
            f"throughput, {min(args.samples, small)} images, {args.repeats} alternating epochs each:"
            f" best in-memory {max(mem):.0f}/s, best streamed {max(streamed):.0f}/s, ratio of bests"
            f" {max(streamed) / max(mem):.2f}x, median ratio of adjacent pairs {pairs[len(pairs) // 2]:.2f}x"
            " (goal: >= 0.90)"
        )


if __name__ == "__main__":
    main()
