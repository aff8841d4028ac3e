"""Build orthocli/data/digits.npz (the built-in data set) from scikit-learn's bundled copy of UCI digits.

Source: UCI ML repository, "Optical Recognition of Handwritten Digits"
(E. Alpaydin & C. Kaynak, 1998), licence CC BY 4.0.  scikit-learn ships its
test part (1797 8x8 images, pixel counts 0..16, labels 0..9) as
``sklearn/datasets/data/digits.csv.gz`` (65 comma-separated integers per row:
64 pixels in row-major order, then the label).

Usage (numpy only; no scikit-learn import):

    pip download --no-deps -d /tmp/wheels scikit-learn==1.9.1
    python sample_models/data/make_digits.py \
        /tmp/wheels/scikit_learn-1.9.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl

The argument may be a scikit-learn wheel (the CSV is read from inside it) or a
``digits.csv.gz`` file.  The output goes to ``orthocli/data/digits.npz`` (shipped
inside the package; ``orthocli.data.default_data_path()``) unless ``--out`` says
otherwise.  Output arrays:

    x       float32 (N_train, 1, 8, 8)  raw pixel values 0..16 (not normalised)
    y       int64   (N_train,)          labels 0..9
    x_test  float32 (N_test, 1, 8, 8)
    y_test  int64   (N_test,)

Split: stratified 20 % hold-out.  rng = numpy.random.default_rng(0); for each
class c = 0..9 in order, the class's row indices are permuted with rng and the
first round(0.2 * n_c) go to the test set.  Both sets keep the original CSV row
order (indices sorted).  The .npz is written with a fixed zip timestamp so the
file is byte-for-byte reproducible.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

MEMBER = "sklearn/datasets/data/digits.csv.gz"
SEED = 0
TEST_FRACTION = 0.2
# The package ships the file: <repo>/orthocli/data/digits.npz, two levels above this script's folder.
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "orthocli" / "data" / "digits.npz"


def read_csv_gz_bytes(src: Path) -> bytes:
    if zipfile.is_zipfile(src):
        with zipfile.ZipFile(src) as zf:
            return zf.read(MEMBER)
    return src.read_bytes()


def parse(gz: bytes) -> tuple[np.ndarray, np.ndarray]:
    text = gzip.decompress(gz).decode("ascii")
    data = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64)
    if data.shape != (1797, 65):
        raise ValueError(f"unexpected digits.csv shape {data.shape}")
    pixels, labels = data[:, :64], data[:, 64]
    if pixels.min() < 0 or pixels.max() > 16 or set(np.unique(labels)) != set(range(10)):
        raise ValueError("digits.csv values out of the expected range")
    x = pixels.astype(np.float32).reshape(-1, 1, 8, 8)
    return x, labels.astype(np.int64)


def stratified_split(y: np.ndarray, frac: float = TEST_FRACTION, seed: int = SEED):
    rng = np.random.default_rng(seed)
    test = []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        perm = rng.permutation(idx)
        test.append(perm[: int(round(frac * len(idx)))])
    test_idx = np.sort(np.concatenate(test))
    train_mask = np.ones(len(y), dtype=bool)
    train_mask[test_idx] = False
    return np.flatnonzero(train_mask), test_idx


def save_npz_reproducible(path: Path, **arrays: np.ndarray) -> None:
    """Like np.savez_compressed, but with a fixed timestamp in the zip entries."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="scikit-learn wheel or digits.csv.gz")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output .npz (default: {DEFAULT_OUT})")
    args = ap.parse_args(argv)

    gz = read_csv_gz_bytes(args.source)
    print(f"digits.csv.gz sha256 {hashlib.sha256(gz).hexdigest()}")
    x, y = parse(gz)
    tr, te = stratified_split(y)
    save_npz_reproducible(args.out, x=x[tr], y=y[tr], x_test=x[te], y_test=y[te])
    print(
        f"wrote {args.out}: x {x[tr].shape}, x_test {x[te].shape}; "
        f"sha256 {hashlib.sha256(args.out.read_bytes()).hexdigest()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
