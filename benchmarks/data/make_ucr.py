"""Builds benchmarks/data/<Name>.npz from the UCR time-series sets that sktime bundles in its wheel:
real 1-D signals with few training samples, the small-data family of benchmarks/bench_accuracy.py.

Source: `sktime/datasets/data/<Name>/<Name>_TRAIN.ts` and `_TEST.ts` in the wheel
sktime-1.2.0-py3-none-any.whl (sha256 dbffc6731d2d683b668dceb5e2bbc5804bebc8446b4c580803a281684d90e4ae;
sktime is BSD-3-Clause). The data sets come from the UCR Time Series Classification Archive
(H. A. Dau, E. Keogh et al., "The UCR Time Series Archive", 2018, https://www.cs.ucr.edu/~eamonn/time_series_data_2018/),
provided free for research use with that citation. The archive's own train/test split is kept;
labels are mapped to 0..K-1 in sorted order of the archive's class labels. Values as stored.

    pip download --no-deps sktime==1.2.0 -d /tmp/w
    python benchmarks/data/make_ucr.py /tmp/w/sktime-1.2.0-py3-none-any.whl GunPoint OSULeaf ACSF1 ArrowHead ItalyPowerDemand

Sets used: GunPoint (50 train / 150 test, length 150, 2 classes), OSULeaf (200 / 242, length 427,
6 classes), ACSF1 (100 / 100, length 1460, 10 classes: the long-signal set of the re-introduction
stability check); held out until round 5's default was chosen: ArrowHead (36 / 175, length 251,
3 classes) and ItalyPowerDemand (67 / 1029, length 24, 2 classes).
"""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np


def parse_ts(text: str) -> tuple[np.ndarray, list[str]]:
    """A univariate, equal-length .ts file: after '@data', one 'v1,v2,...:label' line per series."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().lower() == "@data") + 1
    rows, labels = [], []
    for line in lines[start:]:
        if not line.strip():
            continue
        values, label = line.rsplit(":", 1)
        if ":" in values:
            raise ValueError("a multivariate series; only univariate sets are supported")
        rows.append(np.array(values.split(","), dtype=np.float64))
        labels.append(label.strip())
    return np.stack(rows), labels


def main(wheel: str, names: list[str]) -> None:
    with zipfile.ZipFile(wheel) as z:
        for name in names:
            parts = {}
            for split in ("TRAIN", "TEST"):
                member = f"sktime/datasets/data/{name}/{name}_{split}.ts"
                parts[split] = parse_ts(z.read(member).decode("utf-8"))
            classes = sorted(set(parts["TRAIN"][1]) | set(parts["TEST"][1]), key=lambda c: (float(c), c))
            index = {c: i for i, c in enumerate(classes)}
            (x, ly), (xt, lyt) = parts["TRAIN"], parts["TEST"]
            out = Path(__file__).with_name(f"{name}.npz")
            np.savez_compressed(
                out,
                x=x[:, None, :].astype(np.float32),
                y=np.array([index[c] for c in ly]),
                x_test=xt[:, None, :].astype(np.float32),
                y_test=np.array([index[c] for c in lyt]),
            )
            print(f"wrote {out}: {len(x)} train, {len(xt)} test, length {x.shape[1]}, {len(classes)} classes")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
