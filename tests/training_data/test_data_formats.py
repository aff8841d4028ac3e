"""orthocli.data reads every format from real files written here."""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import make_set, raises_data, same, save_any

from orthocli.data import DEFAULT_DATA, builtin_name, builtin_path, default_data_path, load_arrays, prepare
from orthocli.errors import DataError, UsageError


@pytest.mark.parametrize("suffix", [".npz", ".pt", ".pth", ".safetensors"])
def test_tensor_files_round_trip_with_embedded_test(tmp_path, suffix):
    x, y = make_set()
    xt, yt = make_set(n=8, seed=1)
    data, test = load_arrays(save_any(tmp_path / f"d{suffix}", x=x, y=y, x_test=xt, y_test=yt))
    same(data, x, y)
    same(test, xt, yt)


def test_the_content_decides_not_the_name(tmp_path):
    x, y = make_set()
    for real, named in ((".pt", ".safetensors"), (".safetensors", ".pt"), (".npz", ".pt")):
        path = save_any(tmp_path / f"d{real}", x=x, y=y).rename(tmp_path / f"{real[1:]}-as{named}")
        same(load_arrays(path)[0], x, y)


@pytest.mark.parametrize("suffix", [".npz", ".pt", ".safetensors"])
def test_missing_channel_dim_is_added(tmp_path, suffix):
    y = np.array([0, 1, 0, 1])
    signals = np.arange(4 * 7, dtype=np.float32).reshape(4, 7)
    data, test = load_arrays(save_any(tmp_path / f"s{suffix}", x=signals, y=y))
    assert test is None and data.x.shape == (4, 1, 7)
    same(data, signals[:, None], y)
    images = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    data, _ = load_arrays(save_any(tmp_path / f"i{suffix}", x=images, y=y))
    same(data, images[:, None], y)


def test_spatial_dims_1_reads_3d_as_multichannel_signals(tmp_path):
    x = np.arange(4 * 3 * 7, dtype=np.float32).reshape(4, 3, 7)
    data, _ = load_arrays(save_any(tmp_path / "m.npz", x=x, y=np.array([0, 1, 0, 1]), spatial_dims=1))
    same(data, x, [0, 1, 0, 1])
    torch.save({"x": torch.as_tensor(x), "y": torch.tensor([0, 1, 0, 1]), "spatial_dims": 1}, tmp_path / "m.pt")
    assert load_arrays(tmp_path / "m.pt")[0].x.shape == (4, 3, 7)
    one_channel = x[:, :1]  # (N, 1, L) is read as 1-channel signals without a hint
    assert load_arrays(save_any(tmp_path / "o.npz", x=one_channel, y=[0, 1, 0, 1]))[0].x.shape == (4, 1, 7)
    raises_data("must be the single number 1 or 2", save_any(tmp_path / "s.npz", x=x, y=[0, 1, 0, 1], spatial_dims=3))
    wrong = save_any(tmp_path / "b.npz", x=x[:, :, None], y=[0, 1, 0, 1], spatial_dims=1)
    raises_data("'spatial_dims' is 1 but 'x' has shape", wrong)


def test_dtypes_are_converted(tmp_path):
    x = np.arange(24, dtype=">u2").reshape(2, 1, 3, 4)  # big-endian uint16
    data, _ = load_arrays(save_any(tmp_path / "u.npz", x=x, y=np.array([1.0, 0.0])))
    same(data, x.astype(np.float32), [1, 0])
    x, y = torch.ones(2, 1, 3, dtype=torch.bfloat16), torch.tensor([0, 1], dtype=torch.uint8)
    data, _ = load_arrays(save_any(tmp_path / "b.pt", x=x, y=y))
    same(data, np.ones((2, 1, 3)), [0, 1])


def _png_folder(tmp_path: Path, mode: str) -> tuple[Path, np.ndarray, np.ndarray]:
    from PIL import Image

    rng = np.random.default_rng(0)
    root, xs = tmp_path / "imgs", []
    for name, label in [("cat", 2), ("ant", 0), ("bee", 1)]:  # created out of order; labels follow names
        (root / name).mkdir(parents=True)
        for i in range(3):
            shape = (5, 6, 3) if mode == "RGB" else (5, 6)
            a = rng.integers(0, 256, size=shape, dtype=np.uint8)
            Image.fromarray(a, mode).save(root / name / f"{i}.png")
            xs.append((label, i, a.transpose(2, 0, 1) if mode == "RGB" else a[None]))
        (root / name / "notes.txt").write_text("ignored")
        (root / name / "._0.png").write_bytes(b"macOS metadata, ignored")
    xs.sort(key=lambda t: (t[0], t[1]))
    return root, np.stack([t[2] for t in xs]).astype(np.float32), np.array([t[0] for t in xs])


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_image_folder_round_trip(tmp_path, mode):
    pytest.importorskip("PIL")
    root, x, y = _png_folder(tmp_path, mode)
    data, test = load_arrays(root)
    assert test is None and data.x.shape == (9, 1 if mode == "L" else 3, 5, 6)
    same(data, x, y)


def test_image_folder_mixed_gray_and_colour_gives_3_channels(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    for name, mode, shape in [("a", "L", (4, 4)), ("b", "RGB", (4, 4, 3))]:
        (tmp_path / name).mkdir()
        Image.fromarray(np.full(shape, 7, np.uint8), mode).save(tmp_path / name / "0.bmp")
    data, _ = load_arrays(tmp_path)
    assert data.x.shape == (2, 3, 4, 4) and torch.all(data.x == 7)


def test_image_folder_errors(tmp_path, monkeypatch):
    Image = pytest.importorskip("PIL.Image")
    for name, size in [("a", (4, 4)), ("b", (4, 5))]:
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros(size, np.uint8)).save(tmp_path / name / "x.png")
    msg = raises_data("all images must have one size", tmp_path)
    assert str(tmp_path / "b" / "x.png") in msg and "5x4" in msg
    (tmp_path / "b" / "x.png").write_bytes(b"not a png")
    raises_data(r"b/x.png: cannot read the image", tmp_path)
    (tmp_path / "b" / "x.png").unlink()
    raises_data(r"b: class folder holds no images", tmp_path)
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(DataError, match=r"needs Pillow: pip install 'orthocli\[images\]'"):
        load_arrays(tmp_path)


def _cifar_records(rng, n: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    y = rng.integers(0, 10, size=n, dtype=np.uint8)
    x = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    blob = b"".join(bytes([int(y[i])]) + x[i].tobytes() for i in range(n))  # label byte, then R, G, B planes
    return blob, x, y


@pytest.mark.parametrize("nested", [False, True])
def test_cifar_binary_folder(tmp_path, nested):
    rng = np.random.default_rng(0)
    base = tmp_path / "cifar-10-batches-bin" if nested else tmp_path
    base.mkdir(exist_ok=True)
    parts = []
    for name, n in [("data_batch_1.bin", 5), ("data_batch_3.bin", 4), ("test_batch.bin", 3)]:
        blob, x, y = _cifar_records(rng, n)
        (base / name).write_bytes(blob)
        parts.append((x, y))
    data, test = load_arrays(tmp_path)
    same(data, np.concatenate([parts[0][0], parts[1][0]]), np.concatenate([parts[0][1], parts[1][1]]))
    same(test, *parts[2])
    (base / "data_batch_3.bin").write_bytes(b"\0" * 100)
    raises_data("not a whole number of CIFAR-10 records", tmp_path)


def _write_idx(path: Path, a: np.ndarray, code: int = 0x08) -> None:
    blob = bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()
    path.write_bytes(gzip.compress(blob) if path.suffix == ".gz" else blob)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_folder(tmp_path, gz):
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    x = rng.integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    y = np.array([0, 1, 2, 3, 4, 9], np.uint8)
    xt = rng.integers(0, 256, size=(2, 28, 28), dtype=np.uint8)
    yt = np.array([5, 0], np.uint8)
    _write_idx(tmp_path / f"train-images-idx3-ubyte{ext}", x)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{ext}", y)
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{ext}", xt)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{ext}", yt)
    data, test = load_arrays(tmp_path)
    same(data, x[:, None], y)
    same(test, xt[:, None], yt)


def test_mnist_idx_wider_dtype_and_no_test(tmp_path):
    x = (np.arange(2 * 3 * 4).reshape(2, 3, 4) - 5).astype(">i2")  # big-endian, as IDX stores it
    _write_idx(tmp_path / "train-images-idx3-ubyte", x, code=0x0B)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([1, 0], np.uint8))
    data, test = load_arrays(tmp_path)
    assert test is None
    same(data, x[:, None].astype(np.float32), [1, 0])


def test_mnist_idx_errors(tmp_path):
    x = np.zeros((3, 4, 4), np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte", x)
    raises_data("MNIST folder without train-labels-idx1-ubyte", tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 3) + b"\0\1")
    raises_data("header says 3 values but the file holds 2 data bytes", tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x12\x34\x56\x78")
    raises_data("not an IDX file", tmp_path)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros((3, 1), np.uint8))
    raises_data("IDX file with 2 dims, expected 1", tmp_path)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3, np.uint8))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", x)
    raises_data("without t10k-labels-idx1-ubyte", tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    (tmp_path / "train-images-idx3-ubyte").rename(tmp_path / "train-images-idx3-ubyte.gz")
    raises_data("cannot read it", tmp_path)  # .gz name, not gzip content


def test_shipped_digits():
    data, test = load_arrays(builtin_path("digits"))
    assert builtin_path("digits").parent.name == "data" and builtin_path("digits").parent.parent.name == "orthocli"
    assert data.x.shape == (1438, 1, 8, 8) and test.x.shape == (359, 1, 8, 8)
    assert data.x.min() == 0 and data.x.max() == 16 and set(data.y.tolist()) == set(range(10))
    s = prepare("digits")
    assert (s.num_classes, s.in_channels, s.spatial_shape, s.source) == (10, 1, (8, 8), "digits (built-in)")
    assert len(s.train) + len(s.val) == 1438 and len(s.test) == 359
    assert prepare(builtin_path("digits")).source == "digits (built-in)"


def test_shipped_mnist1d_is_the_default():
    data, test = load_arrays(builtin_path("mnist1d"))
    assert data.x.shape == (4000, 1, 40) and test.x.shape == (1000, 1, 40)
    assert set(data.y.tolist()) == set(range(10)) == set(test.y.tolist())
    assert abs(float(data.x.mean())) < 0.05 and abs(float(data.x.std()) - 1) < 0.05  # standardised by its maker
    s = prepare()
    assert (s.num_classes, s.in_channels, s.spatial_shape, s.source) == (10, 1, (40,), "mnist1d (built-in)")
    assert len(s.train) + len(s.val) == 4000 and len(s.test) == 1000
    assert default_data_path() == builtin_path(DEFAULT_DATA) == builtin_path("mnist1d")
    assert prepare("mnist1d").source == "mnist1d (built-in)"


def test_a_name_is_the_built_in_set_a_path_object_is_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x, y = make_set(n=20, shape=(1, 6))
    np.savez(tmp_path / "digits", x=x, y=y)  # a file called digits.npz, and a folder called digits
    (tmp_path / "digits").mkdir()
    assert prepare("digits").source == "digits (built-in)"  # the name, whatever lies in the folder
    assert prepare(Path("digits.npz")).spatial_shape == (6,)
    assert builtin_name("digits") == "digits" and builtin_name("./digits") is None
    assert builtin_name(Path("digits")) is None
    with pytest.raises(UsageError, match="mnist1d, digits"):
        builtin_path("cifar")
