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

import orthocli.checkpoints.checkpoint as checkpoint
import orthocli.checkpoints.numpy_checkpoint as numpy_checkpoint
from orthocli.checkpoints.safetensors_layout import decode
from orthocli.errors import OrthoError

SAMPLES = Path(__file__).parents[2] / "sample_models"
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


# Pickles assembled at random from the opcodes and globals torch's weights-only unpickler knows:
# each is an object or a typed error (exit 3, or 6 for a persistent id that is not a storage).
_OPS = [b"}", b"]", b")", b"N", b"(", b"t", b"\x85", b"\x86", b"\x87", b"R", b"b", b"a", b"e", b"s", b"u"]
_OPS += [b"\x81", b"Q", b"\x88", b"\x89", b"\x8f", b"\x8a\x02\xff\x7f", b"X\x07\x00\x00\x00storage"]
_GLOBALS = ["torch._utils _rebuild_tensor_v2", "collections OrderedDict", "builtins set", "builtins bytearray"]
_GLOBALS += ["torch FloatStorage", "torch Size", "_codecs encode", "torch._utils _rebuild_parameter", "torch float32"]
_GLOBALS += ["torch._tensor _rebuild_from_type_v2", "torch Tensor", "builtins complex", "torch device"]


def _random_pickle(rng: random.Random) -> bytes:
    parts = []
    for _ in range(rng.randint(1, 30)):
        r = rng.random()
        if r < 0.25:
            parts.append(b"K" + bytes([rng.randrange(256)]))
        elif r < 0.35:
            parts.append(rng.choice([b"q", b"h"]) + bytes([rng.randrange(4)]))
        elif r < 0.45:
            parts.append(b"X\x03\x00\x00\x00" + rng.choice([b"abc", b"cpu"]))
        elif r < 0.6:
            module, name = rng.choice(_GLOBALS).split()
            parts.append(f"c{module}\n{name}\n".encode())
        else:
            parts.append(rng.choice(_OPS))
    return b"\x80\x02" + b"".join(parts) + b"."


def test_random_pickles_give_an_object_or_a_typed_error():
    import orthocli.checkpoints.readers.torch_pickle as torch_pickle
    from orthocli.errors import ReadWithTorch

    def storage(pid):
        numel = pid[4] if type(pid[4]) is int and pid[4] >= 0 else 0
        return torch_pickle.StorageRef(str(pid[2]), torch_pickle.storage_dtype(pid), numel)

    rng, seen = random.Random(32), set()
    for _ in range(3000):
        data = _random_pickle(rng)
        try:
            obj, _ = torch_pickle.load(data, storage)
            torch_pickle.materialize(obj, lambda ref: np.zeros(ref.numel * ref.dtype.itemsize, np.uint8))
            seen.add("object")
        except (OrthoError, ReadWithTorch) as e:  # anything else would be exit 70
            seen.add(type(e).__name__)
    assert {"object", "InputFileError"} <= seen, seen
