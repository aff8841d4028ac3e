"""orthocli.data: every format from real files written here, the split, normalisation, bad input."""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from orthocli.data import Arrays, default_data_path, load_arrays, prepare, stratified_pick
from orthocli.errors import DataError, UsageError


def make_set(n: int = 40, shape=(2, 3, 4), classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *shape)).astype(np.float32) * 3 + 1
    y = (np.arange(n) % classes).astype(np.int64)
    return x, y


def save_any(path: Path, **arrays) -> Path:
    """Write arrays in the format the suffix names."""
    if path.suffix == ".npz":
        np.savez(path, **arrays)
    elif path.suffix in (".pt", ".pth"):
        torch.save({k: torch.as_tensor(v) for k, v in arrays.items()}, path)
    else:
        save_file({k: torch.as_tensor(v).contiguous() for k, v in arrays.items()}, str(path))
    return path


def same(a: Arrays, x: np.ndarray, y: np.ndarray) -> None:
    assert a.x.dtype == torch.float32 and a.y.dtype == torch.int64
    assert torch.equal(a.x, torch.as_tensor(x, dtype=torch.float32))
    assert torch.equal(a.y, torch.as_tensor(y, dtype=torch.int64))


def raises_data(match: str, path, **kw) -> str:
    with pytest.raises(DataError, match=match) as e:
        prepare(path, **kw) if kw else load_arrays(path)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ----------------------------------------------------------------------------------------------
# Formats


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
    data, test = load_arrays(default_data_path())
    assert default_data_path().parent.name == "data" and default_data_path().parent.parent.name == "orthocli"
    assert data.x.shape == (1438, 1, 8, 8) and test.x.shape == (359, 1, 8, 8)
    assert data.x.min() == 0 and data.x.max() == 16 and set(data.y.tolist()) == set(range(10))
    s = prepare()
    assert (s.num_classes, s.in_channels, s.spatial_shape, s.source) == (10, 1, (8, 8), "digits (built-in)")
    assert len(s.train) + len(s.val) == 1438 and len(s.test) == 359
    assert prepare(default_data_path()).source == "digits (built-in)"


# ----------------------------------------------------------------------------------------------
# Split and normalisation


def _imbalanced(tmp_path) -> tuple[Path, np.ndarray]:
    x, _ = make_set(n=103, shape=(1, 5))
    y = np.array([0] * 60 + [1] * 30 + [2] * 12 + [3] * 1)
    x[:, 0, 0] = np.arange(103)  # sample id, to track samples through the split
    return save_any(tmp_path / "imb.npz", x=x, y=y), y


def _ids(s, part) -> list[int]:
    a = getattr(s, part)
    return sorted(round(v) for v in (a.x[:, 0, 0].double() * s.std[0] + s.mean[0]).tolist())


def test_split_stratified_disjoint_covering_and_seeded(tmp_path):
    path, y = _imbalanced(tmp_path)
    s = prepare(path, val_fraction=0.2, seed=3)
    train, val = _ids(s, "train"), _ids(s, "val")
    assert sorted(train + val) == list(range(103))  # disjoint and complete
    assert len(val) == round(0.2 * 103)
    assert torch.bincount(s.val.y, minlength=4).tolist() == [12, 6, 3, 0]  # in proportion; class 3 keeps its one
    assert torch.bincount(s.train.y).tolist() == [48, 24, 9, 1]
    assert torch.equal(s.train.y, torch.as_tensor(y[train]))  # labels travel with their samples
    again = prepare(path, val_fraction=0.2, seed=3)
    assert torch.equal(again.train.x, s.train.x) and torch.equal(again.val.x, s.val.x)
    assert _ids(prepare(path, val_fraction=0.2, seed=4), "val") != val
    assert s.source == str(path) and s.test is None


def test_val_fraction_bounds(tmp_path):
    path, _ = _imbalanced(tmp_path)
    assert len(prepare(path, val_fraction=0).val) == 0
    assert len(prepare(path, val_fraction=0.9).train) >= 4  # every class keeps a training sample
    for bad in (-0.1, 0.95):
        with pytest.raises(UsageError, match="between 0 and 0.9"):
            prepare(path, val_fraction=bad)


def test_max_samples_stratified_and_deterministic(tmp_path):
    path, _ = _imbalanced(tmp_path)
    s = prepare(path, max_samples=20, val_fraction=0)
    assert len(s.train) == 20 and set(s.train.y.tolist()) == {0, 1, 2, 3}
    assert _ids(s, "train") == _ids(prepare(path, max_samples=20, val_fraction=0), "train")
    assert _ids(s, "train") != _ids(prepare(path, max_samples=20, val_fraction=0, seed=1), "train")
    assert len(prepare(path, max_samples=1000).train) + len(prepare(path, max_samples=1000).val) == 103
    with pytest.raises(UsageError, match="has 4 classes"):
        prepare(path, max_samples=3)
    with pytest.raises(UsageError, match="at least 1"):
        prepare(path, max_samples=0)


def test_stratified_pick_bounds():
    y = torch.tensor([0] * 10 + [1] * 5 + [2])
    g = torch.Generator().manual_seed(0)
    picked = stratified_pick(y, 8, g, min_left=1)
    assert len(picked) == 8 and torch.bincount(y[picked], minlength=3).tolist() == [5, 3, 0]
    assert len(set(picked.tolist())) == 8 and picked.tolist() == sorted(picked.tolist())
    assert torch.bincount(y[stratified_pick(y, 3, g, min_pick=1)], minlength=3).tolist() == [1, 1, 1]


def test_normalisation_uses_train_stats_only(tmp_path):
    x, y = make_set(n=60, shape=(3, 4, 4))
    x[:, 1] *= 100  # channels on different scales
    x[:, 2] = 5.0  # constant channel: std floored, no division by zero
    xt = x[:10] + 1000  # a test set far off must not move the stats
    path = save_any(tmp_path / "n.safetensors", x=x, y=y, x_test=xt, y_test=y[:10])
    s = prepare(path, val_fraction=0.25)
    tr = s.train.x.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(tr[:2].mean(1), torch.zeros(2), atol=1e-5)
    assert torch.allclose(tr[:2].std(1, correction=0), torch.ones(2), atol=1e-5)
    assert s.std[2] == 1e-8 and torch.all(tr[2] == 0)
    mean, std = torch.tensor(s.mean).view(1, 3, 1, 1), torch.tensor(s.std).view(1, 3, 1, 1)
    assert torch.allclose(s.test.x[:, :2] * std[:, :2] + mean[:, :2], torch.as_tensor(xt[:, :2]), rtol=1e-5)
    val_raw = (s.val.x * std + mean)[:, :2].double()
    dist = torch.cdist(val_raw.flatten(1), torch.as_tensor(x[:, :2]).double().flatten(1))
    assert torch.all(dist.min(1).values < 1e-3)  # val rows are raw rows under the same stats


def test_test_path_overrides_and_is_checked(tmp_path):
    x, y = make_set(n=20)
    path = save_any(tmp_path / "tr.npz", x=x, y=y, x_test=x[:2], y_test=y[:2])
    other = save_any(tmp_path / "te.pt", x=x[:5] + 1, y=y[:5])
    s = prepare(path, test_path=other)
    assert len(s.test) == 5 and s.source == f"{path}; test: {other}"
    assert len(prepare(path).test) == 2
    bad = save_any(tmp_path / "bad.npz", x=x[:3], y=np.array([0, 1, 4]))
    msg = raises_data("test labels out of range", path, test_path=bad)
    assert "label 4" in msg and "4 classes" in msg
    embedded = save_any(tmp_path / "emb.npz", x=x, y=y, x_test=x[:1], y_test=[7])
    raises_data("test labels out of range", embedded, val_fraction=0.1)
    wide = save_any(tmp_path / "w.npz", x=np.zeros((2, 3, 3, 4)), y=[0, 1])
    raises_data(r"test samples are 3x3x4 .* training samples are 2x3x4", path, test_path=wide)


# ----------------------------------------------------------------------------------------------
# Bad input


BAD_ARRAYS = [
    ("negative", dict(y=[0, -1, 1, 0]), "negative labels"),
    ("fractional", dict(y=[0.0, 1.5, 1.0, 0.0]), "non-integer labels"),
    ("nan label", dict(y=[0.0, np.nan, 1.0, 0.0]), "non-integer labels"),
    ("length", dict(y=[0, 1, 0]), "has 4 samples but 'y' has 3 labels"),
    ("2-D labels", dict(y=np.zeros((4, 2))), r"'y' has shape \(4, 2\)"),
    ("empty", dict(x=np.zeros((0, 1, 3)), y=np.zeros(0)), "is empty"),
    ("nan", dict(x=np.where(np.arange(12).reshape(4, 1, 3) == 7, np.nan, 0)), r"in 1 sample\(s\) \(first: sample 2\)"),
    ("inf", dict(x=np.full((4, 1, 3), np.inf)), "NaN or Inf"),
    ("1-D x", dict(x=np.zeros(4)), r"'x' has shape \(4,\)"),
    ("3 spatial dims", dict(x=np.zeros((4, 1, 2, 2, 2))), "more than 2 spatial dims"),
    ("strings", dict(x=np.array(["a", "b", "c", "d"])), "must hold numbers"),
    ("complex", dict(x=np.zeros((4, 1, 3), np.complex64)), "complex"),
    ("one class", dict(y=[0, 0, 0, 0]), "at least two classes"),
]


@pytest.mark.parametrize("case", BAD_ARRAYS, ids=[c[0] for c in BAD_ARRAYS])
def test_bad_arrays(tmp_path, case):
    _, override, match = case
    arrays = {"x": np.zeros((4, 1, 3), np.float32), "y": np.array([0, 1, 1, 0])} | override
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    msg = raises_data(match, path, val_fraction=0.5)
    assert msg.startswith(str(path))


def test_bad_files(tmp_path):
    raises_data("no such file or folder", tmp_path / "nope.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    raises_data("file is empty", tmp_path / "empty.npz")
    (tmp_path / "junk.npz").write_bytes(b"\x00garbage" * 10)
    raises_data(r"damaged or not a real \.npz file", tmp_path / "junk.npz")
    (tmp_path / "data.csv").write_text("1,2,3\n")
    raises_data("unknown data format; expected a .npz", tmp_path / "data.csv")
    np.save(tmp_path / "one.npy", np.zeros(3))
    raises_data("a single .npy array", tmp_path / "one.npy")
    good = save_any(tmp_path / "good.npz", x=np.zeros((200, 1, 30)), y=np.zeros(200))
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:-300])
    raises_data("damaged", tmp_path / "cut.npz")
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    raises_data("pickled Python objects", tmp_path / "obj.npz")
    torch.save({"x": np.zeros((2, 1, 3)), "y": [0, 1]}, tmp_path / "np.pt")
    raises_data("objects other than tensors", tmp_path / "np.pt")
    torch.save(torch.zeros(3), tmp_path / "t.pt")
    raises_data("holds a Tensor, not a dict", tmp_path / "t.pt")
    torch.save({"x": torch.zeros(2, 1, 3), "y": [0, 1]}, tmp_path / "list.pt")
    raises_data("'y' is a list, not an array", tmp_path / "list.pt")
    good_pt = save_any(tmp_path / "g.pt", x=np.zeros((9, 1, 3)), y=np.zeros(9))
    (tmp_path / "cut.pt").write_bytes(good_pt.read_bytes()[:-200])
    raises_data("damaged", tmp_path / "cut.pt")
    st = save_any(tmp_path / "g.safetensors", x=np.zeros((9, 1, 3), np.float32), y=np.zeros(9, np.int64))
    (tmp_path / "cut.safetensors").write_bytes(st.read_bytes()[:-20])
    raises_data(r"damaged \.safetensors file", tmp_path / "cut.safetensors")
    no_y = save_any(tmp_path / "k.npz", x=np.zeros((2, 1, 3)), images=np.zeros(2))
    msg = raises_data(r"no 'y' entry \(found: images, x\)", no_y)
    assert "store inputs as 'x'" in msg
    x, xt = np.zeros((2, 1, 3)), np.zeros((1, 1, 3))
    raises_data("has 'x_test' but no 'y_test'", save_any(tmp_path / "h.npz", x=x, y=[0, 1], x_test=xt))
    raises_data(r"'y_test' holds negative", save_any(tmp_path / "n.npz", x=x, y=[0, 1], x_test=xt, y_test=[-2]))


def test_bad_folders(tmp_path):
    (tmp_path / "train" / "cats").mkdir(parents=True)
    raises_data("folder holds no data orthocli recognises", tmp_path)
    raises_data("folder holds no data", tmp_path / "train")
    (tmp_path / "test_batch.bin").write_bytes(b"\0" * 3073)
    raises_data("no data_batch_", tmp_path)
