"""Builds benchmarks/data/mnist1d_seed<S>.npz: a fresh MNIST-1D split, generated like the shipped
default set (orthocli/data/mnist1d.npz, seed 42) but from another seed, so that a result found on
the shipped split can be checked on data no choice has seen.

Source: the `mnist1d` package (Apache-2.0; S. Greydanus, "Scaling down deep learning", 2020),
which generates the set offline from its templates (`make_dataset`; nothing is downloaded).
Same arguments as the shipped set (5,000 samples, 80 % train) except the seed; stored as
sample_models/data/make_mnist1d.py stores the default (float16 signals (N, 1, 40), int64 labels).

    pip install mnist1d==0.0.2.post1
    python benchmarks/data/make_mnist1d_split.py 1 2 3      # mnist1d_seed1.npz .. mnist1d_seed3.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("seeds", type=int, nargs="+", help="generator seeds (the shipped set is 42)")
    ap.add_argument("--out-dir", type=Path, default=HERE)
    args = ap.parse_args(argv)
    from mnist1d.data import get_dataset_args, make_dataset

    for seed in args.seeds:
        if seed == 42:
            raise SystemExit("seed 42 is the shipped default split; choose another")
        spec = get_dataset_args()
        spec.seed = seed
        d = make_dataset(spec)
        out = args.out_dir / f"mnist1d_seed{seed}.npz"
        np.savez(
            out,
            x=d["x"][:, None, :].astype(np.float16),
            y=d["y"].astype(np.int64),
            x_test=d["x_test"][:, None, :].astype(np.float16),
            y_test=d["y_test"].astype(np.int64),
        )
        print(f"wrote {out}: x {d['x'].shape}, x_test {d['x_test'].shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
