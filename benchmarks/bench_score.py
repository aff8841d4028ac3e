"""Start-up and speed of `orthocli score ... --json` against a minimal numpy script doing the same
load and Gram products, both fresh processes, alternated in one run (the machine is shared and
noisy); prints the medians and their ratio (goal: orthocli at most 1.3x the minimal script).

Three cases: the sample model's safetensors, a real torch zip checkpoint (tests/data/crepe_tiny.pt),
and a folder of 20 real checkpoints scored by one call (per file). The minimal script reads
safetensors with safetensors.numpy and torch zips with a ten-line unpickler; before timing, the
benchmark checks it computes orthocli's scores. `--importtime` adds `python -X importtime`'s
account of orthocli's start-up.

Usage:
    python benchmarks/bench_score.py [--repeats 15] [--importtime]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parent.parent
SAMPLE = ROOT / "sample_models" / "mnist1d_convnet.safetensors"
REAL_PT = ROOT / "tests" / "data" / "crepe_tiny.pt"

MINIMAL = r"""
import json, pickle, sys, zipfile
import numpy as np

class Dict(dict):  # OrderedDict: a state dict carries its _metadata as pickled state
    pass

STORAGES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
            "IntStorage": "<i4", "ByteStorage": "u1", "BoolStorage": "?"}

def torch_zip(path):
    z = zipfile.ZipFile(path)
    pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
    prefix = pkl[: -len("data.pkl")]

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("collections", "OrderedDict"):
                return Dict
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return lambda s, o, size, stride, *_: np.lib.stride_tricks.as_strided(
                    s[o:], size, [x * s.itemsize for x in stride])
            if module == "torch" and name in STORAGES:
                return np.dtype(STORAGES[name])
            raise pickle.UnpicklingError(f"{module}.{name}")

        def persistent_load(self, pid):
            _, dtype, key, _, numel = pid
            return np.frombuffer(z.read(f"{prefix}data/{key}"), dtype, numel)

    return Unpickler(z.open(pkl)).load()

def safetensors(path):
    from safetensors.numpy import load_file
    return load_file(path)

doc = []
for path in sys.argv[1:]:
    sd = safetensors(path) if path.endswith(".safetensors") else torch_zip(path)
    sd = sd.get("state_dict", sd)
    layers = []
    for k, w in sd.items():
        if k.endswith("weight") and 3 <= w.ndim <= 5:
            rows = w.reshape(w.shape[0], -1).astype(np.float32)
            unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-30)
            g = np.abs(unit @ unit.T)
            np.fill_diagonal(g, 0)
            layers.append({"name": k[: -len(".weight")], "scores": (g.sum(1) / w.shape[0]).tolist()})
    doc.append({"checkpoint": path, "layers": layers})
json.dump(doc, sys.stdout)
"""


def folder_of_20(where: Path) -> Path:
    """20 real checkpoints: 5 copies each of the sample model (safetensors and torch zip),
    crepe_tiny.pt, and MTCNN's O-Net re-saved as safetensors (it ships as a legacy pickle)."""
    import numpy as np
    from safetensors.numpy import save_file

    import orthocli.checkpoints.numpy_checkpoint as numpy_checkpoint

    onet = where / "onet.safetensors"
    arrays = numpy_checkpoint.load(ROOT / "tests" / "data" / "mtcnn_onet.pt").state_dict
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(onet))
    folder = where / "folder"
    folder.mkdir()
    sources = [SAMPLE, SAMPLE.with_suffix(".pt"), REAL_PT, onet]
    for i in range(5):
        for source in sources:
            shutil.copy(source, folder / f"{i}_{source.stem}{source.suffix}")
    return folder


def run(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, env=_env())
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"benchmark command failed: {' '.join(cmd)}\n{proc.stderr.decode()}")
    return elapsed


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "NO_COLOR": "1"}


def check_same_scores(files: list[str]) -> None:
    """The minimal script and orthocli give the same scores (the benchmark compares like with like)."""
    ours = json.loads(subprocess.run(orthocli(files), capture_output=True, env=_env(), check=True).stdout)
    plain = json.loads(subprocess.run(minimal(files), capture_output=True, env=_env(), check=True).stdout)
    for a, b in zip(ours["checkpoints"], plain):
        got = {layer["name"]: layer["scores"] for layer in a["layers"]}
        for layer in b["layers"]:
            diff = max(abs(x - y) for x, y in zip(got[layer["name"]], layer["scores"]))
            if diff > 1e-5:
                sys.exit(f"minimal script and orthocli disagree on {a['checkpoint']}:{layer['name']} by {diff}")


def orthocli(files: list[str]) -> list[str]:
    """`orthocli score FILES --json` as a user runs it: the console script (`python -m orthocli` where
    there is none)."""
    script = Path(sys.executable).parent / "orthocli"
    return [*([str(script)] if script.exists() else [sys.executable, "-m", "orthocli"]), "score", *files, "--json"]


def minimal(files: list[str]) -> list[str]:
    return [sys.executable, "-c", MINIMAL, *files]


def importtime(files: list[str], repeats: int) -> list[tuple[str, float]]:
    """Median cumulative import time (ms) of the top-level imports of `orthocli score FILES --json`."""
    runs: dict[str, list[float]] = {}
    for _ in range(repeats):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "orthocli", "score", *files, "--json"],
            capture_output=True,
            text=True,
            env=_env(),
        )
        for line in proc.stderr.splitlines():
            m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)
            if m:  # no indentation before the name: imported by the program itself
                runs.setdefault(m.group(2), []).append(int(m.group(1)) / 1000)
    medians = [(name, statistics.median(times)) for name, times in runs.items() if len(times) == repeats]
    return sorted(medians, key=lambda t: -t[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--importtime", action="store_true", help="also report python -X importtime's account")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = folder_of_20(Path(tmp))
        twenty = [str(p) for p in sorted(folder.iterdir())]
        cases = [
            ("sample safetensors", [str(SAMPLE)]),
            ("crepe_tiny.pt (torch zip)", [str(REAL_PT)]),
            ("20 files", twenty),
        ]
        for _, files in cases:
            check_same_scores(files)
            run(orthocli(files)), run(minimal(files))  # warm the page cache for both
        times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name, _ in cases}
        for _ in range(args.repeats):
            for name, files in cases:
                times[name][0].append(run(orthocli(files)))
                times[name][1].append(run(minimal(files)))
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}"
        )
        print(
            f"command: python benchmarks/bench_score.py --repeats {args.repeats}{' --importtime' if args.importtime else ''}"
        )
        print(
            f"{'case':28} {'orthocli score':>15} {'minimal numpy':>14} {'ratio':>7}   (medians of {args.repeats}, goal <= 1.3)"
        )
        for name, files in cases:
            ours, plain = (statistics.median(t) for t in times[name])
            per = (
                f" ({ours / len(files) * 1000:.1f} / {plain / len(files) * 1000:.1f} ms per file)"
                if len(files) > 1
                else ""
            )
            print(f"{name:28} {ours:13.3f} s {plain:12.3f} s {ours / plain:7.2f}{per}")
        if args.importtime:
            print("\npython -X importtime -m orthocli score SAMPLE --json: top-level imports, median ms (cumulative)")
            for name, ms in importtime([str(SAMPLE)], max(5, args.repeats // 3))[:8]:
                print(f"  {name:40} {ms:7.1f}")


if __name__ == "__main__":
    main()
