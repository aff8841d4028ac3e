"""orthocli.data: the stratified split, --max-samples, normalisation by training statistics, a test set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import make_set, raises_data, save_any

from orthocli.data import prepare, stratified_pick
from orthocli.errors import UsageError


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
