"""orthocli.data: bad arrays, files and folders each give a one-line DataError."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_helpers import raises_data, save_any

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
