"""`prepare()`: from a `--data` value to the `DataSplits` a run trains on. Array files (and folders
with `in_memory=True`) are read whole and held in memory; folders (CIFAR-10, MNIST IDX, images per
class) stream, sample by sample. Either way the same rule (`splits.split_indices`) picks the
training and validation samples, and every split is normalised per channel with statistics of the
training part: all of it in memory, at most `streaming.NORM_SAMPLES` samples of it streamed."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from orthocli.data.array_files import TensorSource
from orthocli.data.builtin import BUILTIN_SETS, DEFAULT_DATA, builtin_name, builtin_path
from orthocli.data.checks import Arrays, check_classes_trained, check_test, count_classes, permission_denied
from orthocli.data.readers import is_image_folder, load_arrays, open_folder
from orthocli.data.source import Source
from orthocli.data.splits import channel_stats, normalise, split_indices
from orthocli.data.streaming import Streamed, default_workers, eval_batches, sample_stats
from orthocli.errors import UsageError

MAX_VAL_FRACTION = 0.9


@dataclass
class DataSplits:
    """What `prepare` returns: the splits (in memory, or streamed from disk) and what a model and a
    checkpoint need to know of them."""

    train: Arrays | Streamed
    val: Arrays | Streamed  # may be empty (val_fraction 0)
    test: Arrays | Streamed | None
    num_classes: int  # max training label + 1
    in_channels: int
    spatial_shape: tuple[int, ...]  # (L,) or (H, W)
    mean: list[float]  # per channel, from the train part, already subtracted from every split
    std: list[float]  # per channel, from the train part (floored at STD_FLOOR), already divided out
    source: str  # for the record: "digits (built-in)" or the path(s)


def prepare(
    path: str | os.PathLike | None = None,
    *,
    test_path: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    max_samples: int | None = None,
    image_size: int | None = None,
    augment: bool = False,
    workers: int | None = None,
    in_memory: bool = False,
) -> DataSplits:
    """The training data as `orthocli train` reads it: a stratified validation part split off,
    every split normalised per channel with the training part's statistics.

    `path`: None for the default built-in set (DEFAULT_DATA), a str naming a built-in set
    (BUILTIN_SETS), else a file or folder; a `pathlib.Path` is always a path. Array files (and any
    data with `in_memory=True`) are held in memory as `Arrays`; folders (CIFAR-10, MNIST IDX, images
    per class) stream as `Streamed` splits. The same seed picks the same training and validation
    samples either way.

    `max_samples` caps the training data (train + val, before the split) by a stratified, seeded
    subsample; the test set is kept whole. `test_path` replaces any test set stored with the data;
    from that file or folder its own stored test set is used if it has one, else its main data.
    `image_size` resizes and centre-crops an image folder's images; `augment` crops and flips
    training samples as they are read; `workers` loader processes (None: the default,
    `default_workers()`)."""
    if image_size is not None and image_size < 1:
        raise UsageError(f"--image-size must be at least 1, got {image_size}")
    if workers is not None and workers < 0:
        raise UsageError(f"--workers must be 0 or more, got {workers}")
    if workers is None:
        workers = default_workers(int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    named = builtin_name(path) is not None  # a built-in set's name, even where a folder has that name
    src = Path(path).expanduser() if path is not None and not named else None
    folder = src is not None and src.is_dir()
    if image_size is not None and not (folder and is_image_folder(src)):
        raise UsageError("--image-size applies to a folder of images (one subfolder per class); drop it")
    if not 0 <= val_fraction <= MAX_VAL_FRACTION:
        raise UsageError(f"validation fraction must be between 0 and {MAX_VAL_FRACTION}, got {val_fraction}")
    if max_samples is not None and max_samples < 1:
        raise UsageError(f"max samples must be at least 1, got {max_samples}")
    if not folder or (in_memory and image_size is None):
        data = _whole(path, test_path, val_fraction, seed, max_samples)
    else:
        data = _streamed(src, test_path, val_fraction, seed, max_samples, image_size, augment, workers, in_memory)
    if augment and isinstance(data.train, Arrays):  # in memory: crop and flip through the same loader
        _need_images(data.spatial_shape)
        pad = (-torch.tensor(data.mean, dtype=torch.float64) / torch.tensor(data.std, dtype=torch.float64)).float()
        source = TensorSource(data.train, data.source, pad)
        train = Streamed(source, torch.arange(len(source)), None, None, workers, True, seed, keep_workers=True)
        data = replace(data, train=train)
    return data


def _whole(path, test_path, val_fraction, seed, max_samples) -> DataSplits:
    """Any data read whole: split, statistics over the whole training part, every split normalised."""
    name = DEFAULT_DATA if path is None else builtin_name(path)
    src = builtin_path(name) if name is not None else Path(path).expanduser()
    name = name or next((n for n in BUILTIN_SETS if src.resolve() == builtin_path(n)), None)
    data, test = load_arrays(src)
    source = f"{name} (built-in)" if name is not None else str(src)
    if test_path is not None:
        main, stored = load_arrays(test_path)
        test = stored if stored is not None else main
        source += f"; test: {Path(test_path).expanduser()}"

    num_classes = count_classes(data.y, src)
    train_idx, val_idx = split_indices(data.y, val_fraction=val_fraction, seed=seed, max_samples=max_samples)
    train, val = Arrays(data.x[train_idx], data.y[train_idx]), Arrays(data.x[val_idx], data.y[val_idx])
    check_classes_trained(len(train), num_classes, src, max_samples)
    if test is not None:
        check_test(_sample_shape(test), test.y, _sample_shape(train), num_classes, str(test_path or src))

    mean, std = channel_stats(train.x)
    return DataSplits(
        train=_normalised(train, mean, std),
        val=_normalised(val, mean, std),
        test=_normalised(test, mean, std) if test is not None else None,
        num_classes=num_classes,
        in_channels=train.x.shape[1],
        spatial_shape=tuple(train.x.shape[2:]),
        mean=mean.tolist(),
        std=std.tolist(),
        source=source,
    )


def _streamed(src, test_path, val_fraction, seed, max_samples, image_size, augment, workers, in_memory) -> DataSplits:
    """A folder read sample by sample (with `in_memory`, an image folder resized by `image_size`,
    decoded once into `Arrays`)."""
    try:
        source, test = open_folder(src, image_size)
    except PermissionError as e:
        raise permission_denied(e, src) from None
    where = str(src)
    test_arrays = None
    if test_path is not None:
        test, test_arrays = _test_set(Path(test_path).expanduser(), image_size)
        where += f"; test: {Path(test_path).expanduser()}"
    num_classes = count_classes(source.labels, src)
    train_idx, val_idx = split_indices(source.labels, val_fraction=val_fraction, seed=seed, max_samples=max_samples)
    check_classes_trained(len(train_idx), num_classes, src, max_samples)
    given = test if test is not None else test_arrays
    if given is not None:
        labels = given.y if isinstance(given, Arrays) else given.labels
        check_test(_sample_shape(given), labels, _sample_shape(source), num_classes, str(test_path or src))
    if augment:
        _need_images(source.spatial_shape)
    if in_memory:  # --image-size with --in-memory: decode once, statistics over all of it
        train_x = _materialise(source, train_idx, workers)
        mean, std = channel_stats(train_x)
        train = Arrays(normalise(train_x, mean, std), source.labels[train_idx])
        val = Arrays(normalise(_materialise(source, val_idx, workers), mean, std), source.labels[val_idx])
        if test is not None:
            test_split = Arrays(normalise(_materialise(test, torch.arange(len(test)), workers), mean, std), test.labels)
        else:
            test_split = None if test_arrays is None else _normalised(test_arrays, mean, std)
    else:
        mean, std = sample_stats(source, train_idx, seed, workers)
        split = lambda s, idx, aug=False: Streamed(s, idx, mean, std, workers, aug, seed, keep_workers=True)  # noqa: E731
        if test is not None:
            test_split = split(test, torch.arange(len(test)))
        elif test_arrays is not None:
            test_split = _normalised(test_arrays, mean, std)
        else:
            test_split = None
        train, val = split(source, train_idx, augment), split(source, val_idx)
    return DataSplits(
        train=train,
        val=val,
        test=test_split,
        num_classes=num_classes,
        in_channels=source.channels,
        spatial_shape=tuple(source.spatial_shape),
        mean=mean.tolist(),
        std=std.tolist(),
        source=where,
    )


def _test_set(path: Path, image_size: int | None) -> tuple[Source | None, Arrays | None]:
    """--test-data: a folder streams (its stored test set if it has one, else its samples); a file is read whole."""
    if path.is_dir():
        main, stored = open_folder(path, image_size if is_image_folder(path) else None)
        return (stored if stored is not None else main), None
    main, stored = load_arrays(path)
    return None, (stored if stored is not None else main)


def _sample_shape(data: Arrays | Source) -> tuple[int, ...]:
    """(C, *spatial) of the samples of a set in memory or read sample by sample."""
    return tuple(data.x.shape[1:]) if isinstance(data, Arrays) else (data.channels, *data.spatial_shape)


def _normalised(a: Arrays, mean: torch.Tensor, std: torch.Tensor) -> Arrays:
    return Arrays(normalise(a.x, mean, std), a.y)


def _need_images(spatial_shape: tuple[int, ...]) -> None:
    if len(spatial_shape) != 2:
        raise UsageError("--augment crops and flips images; these samples are 1-D signals: drop it")


def _materialise(source: Source, indices: torch.Tensor, workers: int) -> torch.Tensor:
    split = Streamed(source, indices, None, None, workers=workers)
    parts = [x for x, _ in eval_batches(split, torch.device("cpu"))]
    if not parts:
        return torch.zeros((0, source.channels, *source.spatial_shape))
    return torch.cat(parts)
