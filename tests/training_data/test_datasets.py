"""Streamed training data (orthocli/data/): folders read sample by sample, the same split as the
in-memory path, --image-size, seeded augmentation, and training on a streamed folder through the
CLI."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from orthocli.data import (
    Arrays,
    Streamed,
    augment,
    distributed_batches,
    eval_batches,
    open_folder,
    prepare,
    streaming,
    train_batches,
)
from orthocli.data.images import ImageFolderSource
from orthocli.errors import DataError, UsageError

Image = pytest.importorskip("PIL.Image")
CPU = torch.device("cpu")


def png_folder(root: Path, per_class: int = 8, size=(8, 6), classes: int = 3, seed: int = 0) -> Path:
    """`classes` class folders of `per_class` random colour PNGs (w x h = size); one gray image in class 0."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            gray = c == 0 and k == 0
            shape = (size[1], size[0]) if gray else (size[1], size[0], 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / f"c{c}" / f"{k}.png")
    return root


def everything(split, batch_size: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = list(eval_batches(split, CPU, batch_size))
    return torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs])


def epoch(split, lists, e: int = 0) -> list[torch.Tensor]:
    return [x for x, _ in train_batches(split, lists, e, CPU)]


# ---------------------------------------------------------------------------------------------
# Sources and splits


def test_image_folder_streams_the_same_samples_and_split_as_the_in_memory_path(tmp_path):
    root = png_folder(tmp_path / "imgs")
    kw = dict(val_fraction=0.25, seed=5, max_samples=20)
    streamed, whole = prepare(root, workers=0, **kw), prepare(root, in_memory=True, **kw)
    assert isinstance(streamed.train, Streamed) and isinstance(whole.train, Arrays)
    assert (streamed.in_channels, streamed.spatial_shape, streamed.num_classes) == (3, (6, 8), 3)
    assert len(streamed.train) == 15 and len(streamed.val) == 5
    # fewer training samples than NORM_SAMPLES: the statistics are over all of them, as in memory
    np.testing.assert_allclose(streamed.mean, whole.mean, rtol=1e-12)
    np.testing.assert_allclose(streamed.std, whole.std, rtol=1e-12)
    for name in ("train", "val"):
        x, y = everything(getattr(streamed, name))
        assert torch.equal(y, getattr(whole, name).y)
        torch.testing.assert_close(x, getattr(whole, name).x, rtol=0, atol=1e-5)
    again = prepare(root, workers=0, **{**kw, "seed": 6})
    assert not torch.equal(again.val.indices, streamed.val.indices)  # the seed picks the split


def test_image_folder_is_decoded_when_read_not_up_front(tmp_path):
    root = png_folder(tmp_path / "imgs", per_class=2)
    source, test = open_folder(root)
    assert test is None and len(source) == 6 and source.labels.tolist() == [0, 0, 1, 1, 2, 2]
    new = np.full((6, 8, 3), 200, np.uint8)
    Image.fromarray(new).save(root / "c1" / "1.png")  # replaced after the folder was opened
    assert torch.equal(source.read(3), torch.from_numpy(new.transpose(2, 0, 1)))
    assert torch.equal(source.read(0), source.read(0)[:1].expand(3, 6, 8))  # the gray one, as 3 channels


def _cifar(base: Path, counts: dict[str, int], seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng, out = np.random.default_rng(seed), {}
    base.mkdir(parents=True, exist_ok=True)
    for name, n in counts.items():
        y = (np.arange(n) % 10).astype(np.uint8)
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        (base / name).write_bytes(b"".join(bytes([int(y[i])]) + x[i].tobytes() for i in range(n)))
        out[name] = (x, y)
    return out


def test_cifar_records_are_read_at_their_offset(tmp_path):
    parts = _cifar(tmp_path, {"data_batch_1.bin": 12, "data_batch_2.bin": 8, "test_batch.bin": 5})
    source, test = open_folder(tmp_path)
    x = np.concatenate([parts["data_batch_1.bin"][0], parts["data_batch_2.bin"][0]])
    assert len(source) == 20 and source.labels.tolist() == [k % 10 for k in range(12)] + list(range(8))
    for i in (0, 11, 12, 19):  # either side of the boundary between the two files
        assert torch.equal(source.read(i), torch.from_numpy(x[i]))
    assert torch.equal(test.read(4), torch.from_numpy(parts["test_batch.bin"][0][4]))
    with open(tmp_path / "data_batch_2.bin", "r+b") as f:  # changed on disk after opening: read anew
        f.seek(3 * 3073 + 1)
        f.write(b"\x07" * 3072)
    assert torch.all(source.read(15) == 7)
    streamed, whole = prepare(tmp_path, workers=0, seed=1), prepare(tmp_path, in_memory=True, seed=1)
    assert torch.equal(streamed.train.y, whole.train.y) and torch.equal(streamed.test.y, whole.test.y)


def _idx(path: Path, a: np.ndarray) -> None:
    blob = bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()
    path.write_bytes(gzip.compress(blob) if path.suffix == ".gz" else blob)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_images_are_read_at_their_offset(tmp_path, gz):
    rng, ext = np.random.default_rng(0), ".gz" if gz else ""
    x, xt = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
    _idx(tmp_path / f"train-images-idx3-ubyte{ext}", x)
    _idx(tmp_path / f"train-labels-idx1-ubyte{ext}", (np.arange(30) % 3).astype(np.uint8))
    _idx(tmp_path / f"t10k-images-idx3-ubyte{ext}", xt)
    _idx(tmp_path / f"t10k-labels-idx1-ubyte{ext}", np.array([0, 1, 2, 0], np.uint8))
    streamed = prepare(tmp_path, workers=0, val_fraction=0.2, seed=2)
    whole = prepare(tmp_path, in_memory=True, val_fraction=0.2, seed=2)
    assert streamed.spatial_shape == (28, 28) and streamed.in_channels == 1
    assert torch.equal(
        streamed.train.indices, torch.tensor(sorted(set(range(30)) - set(streamed.val.indices.tolist())))
    )
    assert torch.equal(streamed.train.source.read(7), torch.from_numpy(x[7][None]))
    tx, ty = everything(streamed.test)
    assert ty.tolist() == [0, 1, 2, 0]
    torch.testing.assert_close(tx, whole.test.x, rtol=0, atol=1e-5)


def test_a_damaged_idx_folder_is_refused_alike_streamed_or_whole(tmp_path):
    for case in ("short", "empty"):
        root = tmp_path / case
        root.mkdir()
        if case == "short":  # the magic number of 3-D unsigned bytes, then one size of three
            (root / "train-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 1]))
            _idx(root / "train-labels-idx1-ubyte", np.array([0, 1], np.uint8))
        else:
            _idx(root / "train-images-idx3-ubyte", np.zeros((0, 4, 4), np.uint8))
            _idx(root / "train-labels-idx1-ubyte", np.zeros(0, np.uint8))
        messages = []
        for in_memory in (False, True):
            with pytest.raises(DataError) as err:
                prepare(root, workers=0, in_memory=in_memory)
            messages.append(str(err.value))
        assert messages[0] == messages[1]
        assert messages[0].startswith(str(root / "train-images-idx3-ubyte"))
        assert ("truncated IDX header" if case == "short" else "'images' is empty (shape (0, 4, 4))") in messages[0]


def test_array_files_keep_the_in_memory_path_unchanged(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.normal(size=(40, 3, 6, 6)).astype(np.float32), y=np.arange(40) % 4)
    got, want = prepare(path, seed=3, max_samples=30), prepare(path, seed=3, max_samples=30, in_memory=True)
    assert isinstance(got.train, Arrays)
    for name in ("train", "val"):
        assert torch.equal(getattr(got, name).x, getattr(want, name).x)
        assert torch.equal(getattr(got, name).y, getattr(want, name).y)
    assert got.mean == want.mean and got.std == want.std


def test_normalisation_statistics_come_from_a_bounded_sample(tmp_path, monkeypatch):
    root = png_folder(tmp_path / "imgs", per_class=10)
    monkeypatch.setattr(streaming, "NORM_SAMPLES", 7)
    read = []
    original = ImageFolderSource.read
    monkeypatch.setattr(ImageFolderSource, "read", lambda self, i: read.append(i) or original(self, i))
    splits = prepare(root, workers=0, val_fraction=0.1, seed=0)
    assert len(read) == 7 and set(read) <= set(splits.train.indices.tolist())  # 7 training samples, no more
    source = splits.train.source
    x = torch.stack([source.read(i) for i in sorted(read)]).double()
    mean = x.transpose(0, 1).reshape(3, -1).mean(1)
    np.testing.assert_allclose(splits.mean, mean.numpy(), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# --image-size


def test_image_size_resizes_and_centre_crops(tmp_path):
    root = tmp_path / "imgs"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
    wide = np.zeros((8, 16, 3), np.uint8)  # h 8, w 16: four vertical bands of 4 columns
    for band in range(4):
        wide[:, 4 * band : 4 * band + 4] = 60 * (band + 1)
    Image.fromarray(wide).save(root / "a" / "wide.png")
    Image.fromarray(np.full((20, 10, 3), 9, np.uint8)).save(root / "b" / "tall.png")
    with pytest.raises(DataError, match="all images must have one size: resize them, or give --image-size N"):
        open_folder(root)
    source, _ = open_folder(root, image_size=8)
    assert source.spatial_shape == (8, 8)
    # the shorter side is already 8: no resampling, the middle 8 of 16 columns (bands 2 and 3) are kept
    assert torch.equal(source.read(0), torch.from_numpy(np.ascontiguousarray(wide[:, 4:12].transpose(2, 0, 1))))
    tall = source.read(1)  # 10x20 -> 8x16 -> the middle 8 rows
    assert tall.shape == (3, 8, 8) and torch.all(tall == 9)
    splits = prepare(root, image_size=8, val_fraction=0, workers=0)
    assert splits.spatial_shape == (8, 8) and everything(splits.train)[0].shape == (2, 3, 8, 8)


def test_image_size_needs_an_image_folder(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 1, 5, 5), np.float32), y=[0, 1, 0, 1])
    with pytest.raises(UsageError, match="--image-size applies to a folder of images"):
        prepare(tmp_path / "d.npz", image_size=8)


# ---------------------------------------------------------------------------------------------
# Augmentation


def _all_crops_and_flips(x: torch.Tensor, pad: int) -> list[torch.Tensor]:
    c, h, w = x.shape
    padded = torch.zeros((c, h + 2 * pad, w + 2 * pad), dtype=x.dtype)
    padded[:, pad : pad + h, pad : pad + w] = x
    crops = [padded[:, dy : dy + h, dx : dx + w] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]
    return crops + [c.flip(-1) for c in crops]


def test_augment_is_a_padded_random_crop_and_a_horizontal_flip():
    x = torch.arange(3 * 16 * 16, dtype=torch.float32).view(3, 16, 16)  # pad: 16 / 8 = 2
    allowed = _all_crops_and_flips(x, 2)
    seen = set()
    for seed in range(60):
        out = augment(x, torch.Generator().manual_seed(seed))
        matches = [k for k, a in enumerate(allowed) if torch.equal(out, a)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 20 and any(k >= 25 for k in seen) and any(k < 25 for k in seen)  # crops, flipped or not
    fill = torch.tensor([-1.0, -2.0, -3.0])
    out = augment(torch.zeros(3, 8, 8), torch.Generator().manual_seed(1), fill)
    assert set(out[2].unique().tolist()) <= {0.0, -3.0}  # padding is the given value per channel


def test_augmented_batches_repeat_with_the_seed_whatever_the_workers(tmp_path):
    root = png_folder(tmp_path / "imgs", per_class=6, size=(16, 16))
    lists = [[0, 5, 2], [9, 1, 4], [3, 7, 8, 6]]
    one = prepare(root, workers=0, augment=True, seed=4, val_fraction=0.2)
    two = prepare(root, workers=2, augment=True, seed=4, val_fraction=0.2)
    first = epoch(one.train, lists)
    assert all(torch.equal(a, b) for a, b in zip(first, epoch(two.train, lists)))  # 0 or 2 workers: same draws
    assert all(torch.equal(a, b) for a, b in zip(first, epoch(one.train, lists)))  # and again: same
    assert not all(torch.equal(a, b) for a, b in zip(first, epoch(one.train, lists, e=1)))  # next epoch: new draws
    other = prepare(root, workers=0, augment=True, seed=5, val_fraction=0.2)
    other.train.indices = one.train.indices
    assert not all(torch.equal(a, b) for a, b in zip(first, epoch(other.train, lists)))  # another seed
    plain = prepare(root, workers=0, seed=4, val_fraction=0.2)
    assert not all(torch.equal(a, b) for a, b in zip(first, epoch(plain.train, lists)))  # --augment changes them
    assert torch.equal(everything(one.val)[0], everything(plain.val)[0])  # validation is never augmented


def test_each_worker_draws_its_own_augmentation(tmp_path):
    root = tmp_path / "same"
    picture = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for k in range(8):
            Image.fromarray(picture).save(root / c / f"{k}.png")
    splits = prepare(root, workers=2, augment=True, val_fraction=0, seed=0)
    lists = [[k] for k in range(16)]  # one sample per batch: worker 0 reads the even batches, worker 1 the odd
    out = epoch(splits.train, lists)
    even, odd = out[0::2], out[1::2]
    assert sum(torch.equal(a, b) for a, b in zip(even, odd)) < 3  # the same picture, drawn independently
    assert len({tuple(x.flatten().tolist()) for x in out}) > 8


def test_augment_on_an_array_file_pads_with_normalised_black(tmp_path):
    path = tmp_path / "d.npz"
    x = np.full((20, 3, 8, 8), 100, np.float32)
    x[:, :, 0, 0] = 0  # a black pixel, so the statistics are not degenerate
    np.savez(path, x=x, y=np.arange(20) % 2)
    splits = prepare(path, augment=True, workers=0, val_fraction=0, seed=0)
    assert isinstance(splits.train, Streamed)
    black = (-torch.tensor(splits.mean) / torch.tensor(splits.std)).float()
    values = torch.cat(epoch(splits.train, [list(range(20))])).transpose(0, 1).reshape(3, -1)
    for c in range(3):  # every value is the sample's own (100 or 0 normalised) or the padding
        assert torch.isclose(values[c].unique(), black[c]).any()
    with pytest.raises(UsageError, match="--augment crops and flips images"):
        np.savez(tmp_path / "s.npz", x=np.zeros((4, 10), np.float32), y=[0, 1, 0, 1])
        prepare(tmp_path / "s.npz", augment=True)


# ---------------------------------------------------------------------------------------------
# Batches under torchrun, and loader errors


def test_distributed_batches_make_min_steps_with_more_passes_on_every_rank():
    one = [distributed_batches(50, 16, seed=3, epoch=2, rank=r, world_size=2) for r in range(2)]
    more = [distributed_batches(50, 16, seed=3, epoch=2, rank=r, world_size=2, min_steps=10) for r in range(2)]
    assert len(one[0]) == 3 and len(more[0]) == len(more[1]) == 12  # four passes of 3 steps, ranks in step
    for r in range(2):
        assert more[r][:3] == one[r]  # the first pass is the one-pass epoch: large data train as before
    for k in range(4):  # each pass: the ranks' shards split the whole set between them
        shards = [set(sum(more[r][3 * k : 3 * k + 3], [])) for r in range(2)]
        assert shards[0] | shards[1] == set(range(50)) and not shards[0] & shards[1]
    assert more[0][3:6] != more[0][:3]  # reshuffled


def test_distributed_batches_shard_the_epoch_and_reshuffle_each_epoch():
    ranks = [distributed_batches(50, 16, seed=3, epoch=0, rank=r, world_size=2) for r in range(2)]
    flat = [sum(r, []) for r in ranks]
    assert len(flat[0]) == len(flat[1]) == 25 and set(flat[0]) | set(flat[1]) == set(range(50))
    assert not set(flat[0]) & set(flat[1])
    assert [len(b) for b in ranks[0]] == [8, 8, 9]  # 16 per step over 2 ranks; a last batch of 1 joins
    assert sum(distributed_batches(50, 16, seed=3, epoch=1, rank=0, world_size=2), []) != flat[0]
    assert distributed_batches(50, 16, seed=3, epoch=0, rank=0, world_size=2) == ranks[0]


def test_a_bad_image_found_while_training_is_one_line(tmp_path):
    root = png_folder(tmp_path / "imgs", per_class=4)
    splits = prepare(root, workers=2, val_fraction=0)
    (root / "c2" / "3.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError) as err:
        epoch(splits.train, [list(range(12))])
    assert str(err.value).startswith(str(root / "c2" / "3.png")) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------
# Through the CLI


TRAIN = ["train", "--cycles", "1", "--s1", "1", "--s2", "1", "--max-epochs", "3", "--width", "4", "--threads", "1"]


def test_training_on_a_streamed_folder_end_to_end(tmp_path, run_cli):
    root = png_folder(tmp_path / "imgs", per_class=10, size=(12, 12))
    args = [*TRAIN, "--data", root, "--augment", "--workers", "2", "--json", "--seed", "3"]
    res = run_cli(*args, "-o", tmp_path / "a.pt")
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["epochs"] == 3 and len(doc["cycles"]) == 1 and doc["config"]["augment"] is True
    assert doc["data"]["input_shape"] == [12, 12] and doc["data"]["in_channels"] == 3
    assert "Data: " + str(root) + ": 27 train, 3 val" in res.stderr
    again = run_cli(*[a if a != "2" else "0" for a in args], "-o", tmp_path / "b.pt")  # --workers 0
    assert again.exit_code == 0, again.stderr
    a, b = (torch.load(tmp_path / f"{n}.pt", weights_only=True)["state_dict"] for n in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same seed, the same weights, whatever the workers


def test_streamed_and_in_memory_folders_train_alike(tmp_path, run_cli):
    root = png_folder(tmp_path / "imgs", per_class=10, size=(12, 12))
    docs = []
    for extra in ([], ["--in-memory"]):
        res = run_cli(*TRAIN, "--data", root, "--workers", "0", "--json", "-o", tmp_path / f"m{len(extra)}.pt", *extra)
        assert res.exit_code == 0, res.stderr
        docs.append(json.loads(res.stdout))
    streamed, whole = docs
    assert streamed["data"]["mean"] == pytest.approx(whole["data"]["mean"], rel=1e-12)
    first = [torch.load(tmp_path / f"m{k}.pt", weights_only=True)["history"][0]["loss"] for k in (0, 1)]
    assert first[0] == pytest.approx(first[1], rel=1e-4)  # same samples, same order: the same first epoch


def test_image_size_and_errors_through_the_cli(tmp_path, run_cli):
    root = tmp_path / "imgs"
    for c, size in (("a", (10, 14)), ("b", (20, 12))):
        (root / c).mkdir(parents=True)
        for k in range(4):
            Image.fromarray(np.full((size[1], size[0], 3), 40 * k, np.uint8)).save(root / c / f"{k}.png")
    res = run_cli(*TRAIN, "--data", root, "--json", "-o", tmp_path / "m.pt")
    assert res.exit_code == 7 and "give --image-size N" in res.stderr and "Traceback" not in res.stderr
    res = run_cli(*TRAIN, "--data", root, "--image-size", "8", "--val-fraction", "0", "--json", "-o", tmp_path / "m.pt")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["data"]["input_shape"] == [8, 8]
    res = run_cli(*TRAIN, "--image-size", "8", "-o", tmp_path / "d.pt")  # the built-in digits: an array file
    assert res.exit_code == 2 and "--image-size applies to a folder of images" in res.stderr
    assert not (tmp_path / "d.pt").exists()


def test_a_resumed_run_on_a_streamed_augmented_folder_continues_exactly(tmp_path):
    from orthocli.config import TrainConfig
    from orthocli.network.models import ConvNet, init_weights
    from orthocli.seeding import set_seed
    from orthocli.training.loop import train

    root = png_folder(tmp_path / "imgs", per_class=8, size=(12, 12))
    data = prepare(root, augment=True, workers=1, seed=2)
    cfg = TrainConfig(s1=1, s2=1, cycles=1, max_epochs=4, batch_size=8, seed=2, deterministic=True)

    def fresh():
        set_seed(2)
        model = ConvNet(3, 3, [12, 12], width=6)
        init_weights(model, "relu")
        return model

    whole = train(fresh(), data, cfg).model.state_dict()

    def stop_after_two(event):
        if event["kind"] == "epoch" and event["epoch"] == 2:
            raise KeyboardInterrupt

    state = tmp_path / "run.state"
    with pytest.raises(KeyboardInterrupt):
        train(fresh(), data, cfg, state_path=state, callback=stop_after_two)
    resumed = train(fresh(), data, cfg, state_path=state, resume=True).model.state_dict()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_in_memory_folder_options_combine(tmp_path):
    root = tmp_path / "imgs"
    for c, size in (("a", (10, 14)), ("b", (20, 12))):
        (root / c).mkdir(parents=True)
        for k in range(5):
            Image.fromarray(np.full((size[1], size[0], 3), 30 * k + 10 * (c == "b"), np.uint8)).save(
                root / c / f"{k}.png"
            )
    test_file = tmp_path / "test.npz"
    np.savez(test_file, x=np.full((4, 3, 8, 8), 50, np.uint8), y=[0, 1, 0, 1])
    kw = dict(image_size=8, val_fraction=0.2, seed=1, workers=0, test_path=test_file)
    whole = prepare(root, in_memory=True, **kw)
    streamed = prepare(root, **kw)
    assert isinstance(whole.train, Arrays) and whole.train.x.shape == (8, 3, 8, 8)
    torch.testing.assert_close(everything(streamed.train)[0], whole.train.x, rtol=0, atol=1e-5)
    torch.testing.assert_close(streamed.test.x, whole.test.x)  # the test file, normalised with these statistics
    assert torch.allclose(whole.test.x[:, 0], (50 - torch.tensor(whole.mean[0])).float() / whole.std[0])
    augmented = prepare(root, in_memory=True, augment=True, **kw)
    assert isinstance(augmented.train, Streamed) and augmented.train.augment  # --augment is kept in memory too


def test_the_data_options_are_saved_for_resume_and_old_state_files_read_as_before(tmp_path):
    from orthocli.training.options import DataOptions, HardwareOptions, ModelOptions, OutputOptions, RunMeta

    data = DataOptions(data=Path("imgs"), image_size=32, augment=True, workers=3, in_memory=True)
    meta = RunMeta(ModelOptions(), data, OutputOptions(output=Path("m.pt")), HardwareOptions())
    doc = meta.to_dict()
    assert json.loads(json.dumps(doc)) == doc and RunMeta.from_dict(doc, tmp_path) == meta
    older = {k: v for k, v in doc.items() if k not in ("image_size", "augment", "workers", "in_memory")}
    assert RunMeta.from_dict(older, tmp_path).data == DataOptions(data=Path("imgs"))  # streaming's defaults


def test_a_streamed_folder_with_a_class_left_without_training_samples_is_refused(tmp_path):
    _cifar(tmp_path, {"data_batch_1.bin": 3})  # labels 0, 1, 2
    with open(tmp_path / "data_batch_1.bin", "r+b") as f:
        f.seek(2 * 3073)
        f.write(bytes([9]))  # labels 0, 1, 9: classes 0..9, three of them present
    with pytest.raises(DataError, match="3 training samples for 10 classes"):
        prepare(tmp_path, val_fraction=0, workers=0)
