"""Build orthocli/data/mnist1d.npz (the default built-in data set) with the `mnist1d` package.

MNIST-1D (S. Greydanus, 2020, "Scaling down deep learning", arXiv:2011.14439) is a procedurally
generated 1-D analogue of MNIST: ten hand-drawn 12-point templates, one per digit, padded,
scaled, translated, sheared and noised into signals of length 40. The `mnist1d` package
(Apache-2.0) generates it offline from its templates and code; `make_dataset` with the package's
default arguments (5,000 samples, seed 42, 80 % train) gives 4,000 training and 1,000 test
signals. Nothing is downloaded (the package's `get_dataset` would fetch a frozen pickle from
GitHub; we call `make_dataset`, which only computes).

Usage (needs `pip install mnist1d==0.0.2.post1`, which brings scipy, matplotlib and requests;
none of them is a dependency of orthocli):

    python sample_models/data/make_mnist1d.py

Output arrays (float32 values rounded to float16 precision and stored as float16, which halves
the file; the values are standardised by the package: mean 0, std 1 over the whole set):

    x       float16 (4000, 1, 40)   signals
    y       int64   (4000,)         labels 0..9
    x_test  float16 (1000, 1, 40)
    y_test  int64   (1000,)

The .npz is written with a fixed zip timestamp, so the file is byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_digits import save_npz_reproducible

PACKAGE_VERSION = "0.0.2.post1"
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "orthocli" / "data" / "mnist1d.npz"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output .npz (default: {DEFAULT_OUT})")
    args = ap.parse_args(argv)
    from mnist1d.data import get_dataset_args, make_dataset

    if version("mnist1d") != PACKAGE_VERSION:
        print(f"warning: mnist1d {version('mnist1d')} installed; the shipped file was made with {PACKAGE_VERSION}")
    d = make_dataset(get_dataset_args())  # the package's defaults: 5000 samples, seed 42, 80 % train
    arrays = {
        "x": d["x"][:, None, :].astype(np.float16),
        "y": d["y"].astype(np.int64),
        "x_test": d["x_test"][:, None, :].astype(np.float16),
        "y_test": d["y_test"].astype(np.int64),
    }
    save_npz_reproducible(args.out, **arrays)
    print(
        f"wrote {args.out}: x {arrays['x'].shape}, x_test {arrays['x_test'].shape}; "
        f"sha256 {hashlib.sha256(args.out.read_bytes()).hexdigest()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
