"""Truncations and bit flips of the sample models (sample_models/, a torch.save zip and a
safetensors file), each read by `score`'s own reader and by torch's: the verdicts agree (both read
it, or both refuse it), and where both read it the arrays are the same, bit for bit. The
differences allowed are documented (docs/formats.md): a storage named with two sizes, which torch
reads by its first mention and orthocli refuses as ambiguous; a zip whose end records only torch's
reader can follow (Python's zipfile, which orthocli reads zips with, cannot open it). A seeded sample, the same in every
run; the CLI reads each file too, and never exits 70 or prints a traceback."""

from __future__ import annotations

import random
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from orthocli import checkpoint, numpy_checkpoint
from orthocli.errors import OrthoError
from orthocli.safetensors_layout import decode

SAMPLES = Path(__file__).parent.parent / "sample_models"
CASES = 60  # per format
DOCUMENTED = ("with two types or sizes",)  # torch reads the first mention of the storage


def mutations(data: bytes, seed: int) -> list[tuple[str, bytes]]:
    """CASES damaged copies: a third cut short anywhere, the rest with 1-4 bits flipped, most in
    the first 4 KB and the last 1 KB (header, pickle, zip directory), where a flip changes structure."""
    rng = random.Random(seed)
    out = []
    for n in range(CASES):
        buf = bytearray(data)
        if n % 3 == 0:
            cut = rng.randrange(len(buf))
            out.append((f"cut at {cut}", bytes(buf[:cut])))
            continue
        where = []
        for _ in range(rng.randint(1, 4)):
            zone = rng.random()
            i = rng.randrange(4096) if zone < 0.6 else len(buf) - 1 - rng.randrange(1024) if zone < 0.8 else None
            i = rng.randrange(len(buf)) if i is None else i
            buf[i] ^= 1 << rng.randrange(8)
            where.append(i)
        out.append((f"bits flipped at {where}", bytes(buf)))
    return out


def _zipfile_opens(path: Path) -> bool:
    try:
        zipfile.ZipFile(path).close()
        return True
    except (zipfile.BadZipFile, UnicodeDecodeError, ValueError, NotImplementedError):  # end records, names, versions
        return False


def torch_state(path: Path, kind: str) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "pt":
            obj = torch.load(path, weights_only=True, map_location="cpu")
            return checkpoint.unwrap(obj, path, "torch-zip", None).state_dict
        from safetensors.torch import load_file, safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        return decode(load_file(str(path)), metadata, path)[0]


@pytest.mark.parametrize("kind", ["pt", "safetensors"])
def test_damaged_samples_read_as_torch_reads_them(run_cli, tmp_path, kind):
    original = (SAMPLES / f"mnist1d_convnet.{kind}").read_bytes()
    verdicts = {"both read": 0, "both refuse": 0}
    for n, (what, data) in enumerate(mutations(original, seed=32)):
        path = tmp_path / f"case{n}.{kind}"
        path.write_bytes(data)
        try:
            ours, why = numpy_checkpoint.load(path).state_dict, None
        except OrthoError as e:  # anything else fails the test: the CLI would print a traceback
            ours, why = None, str(e)
        try:
            theirs = torch_state(path, kind)
        except Exception:
            theirs = None
        if ours is not None:
            assert theirs is not None, f"{what}: orthocli reads what torch refuses"
            assert ours.keys() == theirs.keys(), what
            for key, array in ours.items():
                array = array.numpy() if isinstance(array, torch.Tensor) else array  # where torch read it
                want = theirs[key].numpy()
                assert array.dtype == want.dtype and np.array_equal(array, want, equal_nan=True), (what, key)
            verdicts["both read"] += 1
        else:
            allowed = any(d in why for d in DOCUMENTED) or (kind == "pt" and not _zipfile_opens(path))
            assert theirs is None or allowed, f"{what}: torch reads it, orthocli: {why}"
            verdicts["both refuse"] += theirs is None
        result = run_cli("score", path)
        assert result.exit_code in (0, 3, 4, 6), (what, result.exit_code, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert "Traceback" not in result.stderr and len(errors) == (result.exit_code != 0), what
    assert verdicts["both read"] >= 5 and verdicts["both refuse"] >= 5, verdicts  # the sample reaches both
