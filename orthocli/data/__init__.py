"""Training data: read a labelled set from disk, split off validation data, normalise; held in
memory or streamed sample by sample. `prepare()` is the one entry point (`orthocli train` calls it).

Formats, recognised by content, not by name (docs/data.md):

- a file `.npz`, `.pt`/`.pth` (a `torch.save`d dict of tensors) or `.safetensors` holding `x` and
  `y`, optionally `x_test` and `y_test` (its test set): read whole, held in memory;
- a folder of images, one subfolder per class (needs Pillow): streamed;
- the CIFAR-10 binary folder (`test_batch.bin` is the test set): streamed;
- an MNIST / Fashion-MNIST IDX folder (t10k is the test set): streamed.

Pixel values are kept as stored (0..255 for images, CIFAR and MNIST); `prepare` normalises them.
Every problem with the data raises `DataError` with one line naming the file and the fix.

Modules, one job each (each format reads a whole set, `load_*`, or opens a `Source` that reads one
sample at a time, `open_*`):

- `builtin`: the data sets shipped in this folder, by name;
- `checks`: `Arrays` and the checks every format shares (`make_arrays`), worded once;
- `source`: `Source`, the base of the per-sample readers; reading at an offset of a file;
- `array_files`, `images`, `cifar`, `idx`: one format each;
- `readers`: which format a path holds, and its reader (`load_arrays`, `open_folder`);
- `splits`: the stratified split and the normalisation statistics (pure tensor math);
- `streaming`: `Streamed` splits, the DataLoader batches, `--augment`, torchrun's shards;
- `loading`: `prepare()` and the `DataSplits` it returns.
"""

from __future__ import annotations

from orthocli.data.builtin import BUILTIN_SETS, DEFAULT_DATA, builtin_name, builtin_path, default_data_path
from orthocli.data.checks import Arrays
from orthocli.data.loading import DataSplits, prepare
from orthocli.data.readers import load_arrays, open_folder
from orthocli.data.source import Source
from orthocli.data.splits import channel_stats, split_indices, stratified_pick
from orthocli.data.streaming import (
    Streamed,
    augment,
    default_workers,
    distributed_batches,
    eval_batches,
    head,
    repeat_passes,
    train_batches,
)

__all__ = [
    "BUILTIN_SETS",
    "DEFAULT_DATA",
    "Arrays",
    "DataSplits",
    "Source",
    "Streamed",
    "augment",
    "builtin_name",
    "builtin_path",
    "channel_stats",
    "default_data_path",
    "default_workers",
    "distributed_batches",
    "eval_batches",
    "head",
    "load_arrays",
    "open_folder",
    "prepare",
    "repeat_passes",
    "split_indices",
    "stratified_pick",
    "train_batches",
]
