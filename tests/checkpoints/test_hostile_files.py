"""Hostile and damaged checkpoints (issue 32): each built here, each run through the real CLI. None
runs code without --trust; each ends with a documented exit code and one line, within the memory
and CPU-time limits of hostile_files.run_limited; where torch reads a file safely, orthocli reads
the same values or refuses it as documented (docs/formats.md, "What the readers refuse")."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from hostile_files import (
    APPEND,
    BUILD,
    EMPTY_DICT,
    EMPTY_LIST,
    EMPTY_TUPLE,
    NONE,
    REDUCE,
    SETITEM,
    TUPLE1,
    Call,
    Storage,
    Tensor,
    conv_zip,
    error_lines,
    glob,
    int1,
    pickle_with_storages,
    pkl,
    rezip,
    run_limited,
    text,
    write_legacy,
    write_safetensors,
    write_zip,
)

import orthocli.checkpoints.checkpoint as checkpoint
import orthocli.checkpoints.numpy_checkpoint as numpy_checkpoint

CONV = np.arange(72, dtype=np.float32).reshape(4, 2, 3, 3)


def assert_refused(proc, code: int, *texts: str) -> None:
    """Exit `code`, one `Error:` line holding `texts`, no traceback, no signal."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = error_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    for t in texts:
        assert t in lines[0], lines[0]


def score_doc(proc) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["checkpoints"][0]


class _InProcess:
    """An in-process run (the real CLI app, torch imported) shaped as a subprocess' result."""

    def __init__(self, result) -> None:
        self.returncode, self.stdout, self.stderr = result.exit_code, result.stdout, result.stderr


@pytest.fixture
def cli(run_cli):
    """cli(*args, with_torch=True): the CLI in-process where torch is wanted (a subprocess importing
    torch costs seconds), in a limited subprocess without torch. The cases that could exhaust memory
    or crash always run in run_limited's subprocess, with torch too."""

    def run(*args, with_torch: bool = True):
        return _InProcess(run_cli(*args)) if with_torch else run_limited(*args, with_torch=False)

    return run


def conv_scores(path, run=run_limited, with_torch: bool = False) -> list[float]:
    return score_doc(run("score", path, "--json", with_torch=with_torch))["layers"][0]["scores"]


# --- 1. no code without --trust ------------------------------------------------------------------


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 4, 3)

    def forward(self, x):
        return self.conv(x)


@pytest.fixture
def scripted(tmp_path):
    path = tmp_path / "model.jit"
    with pytest.warns(DeprecationWarning):
        torch.jit.save(torch.jit.script(_Net()), str(path))
    return path


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_is_never_loaded_without_trust_in_any_command(run_cli, monkeypatch, tmp_path, scripted):
    """torch.jit.load runs the archive's code (a __setstate__ calling torch.from_file writes any
    file the user can): no command may call it without --trust."""
    calls = []
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: calls.append(a) or 1 / 0)
    state = tmp_path / "out.pt.state"  # what `train --resume` reads
    state.write_bytes(scripted.read_bytes())
    commands = [
        ["score", scripted],
        ["prune", scripted, "-o", tmp_path / "p.pt"],
        ["reinit", scripted, "-o", tmp_path / "r.pt"],
        ["export", scripted, "-o", tmp_path / "e.safetensors"],
        ["train", scripted, "--cycles", "0", "--max-epochs", "1", "--max-samples", "100", "-o", tmp_path / "t.pt"],
        ["train", "--resume", "-o", tmp_path / "out.pt"],
    ]
    for command in commands:
        result = run_cli(*command)
        assert result.exit_code == 6, (command, result.stderr)
        read = state if "--resume" in command else scripted
        assert f"{read}: a TorchScript archive; loading it runs code the file holds" in result.stderr
        assert "--trust" in result.stderr and "Traceback" not in result.stderr
    assert calls == []
    assert not any((tmp_path / n).exists() for n in ("p.pt", "r.pt", "e.safetensors", "t.pt"))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_without_torch_also_asks_for_trust_and_reads_with_it(cli, scripted):
    assert_refused(cli("score", scripted, with_torch=False), 6, "a TorchScript archive", "--trust")
    trusted = cli("score", scripted, "--trust", "--json")
    assert score_doc(trusted)["format"] == "torchscript"


# --- 2. the bytes torch reads, or a refusal ------------------------------------------------------


def test_a_storage_record_stored_twice_is_refused_as_ambiguous(cli, tmp_path):
    """torch reads the first copy, Python's zipfile the last: the gate could score other weights."""
    other = np.ones(72, np.float32).tobytes()
    path = conv_zip(tmp_path / "twice.pt", records={"data/w#2": other})
    for with_torch, command in [(False, ["score"]), (True, ["score"]), (True, ["prune", "--dry-run"])]:
        proc = cli(*command, path, with_torch=with_torch)
        assert_refused(proc, 3, "holds the record 'archive/data/w' twice", "ambiguous")


def test_data_pkl_stored_twice_is_refused_as_ambiguous(cli, tmp_path):
    second = pickle_with_storages({"conv.weight": Tensor(Storage("w", torch.FloatStorage, 72), (72,), (1,))})
    path = conv_zip(tmp_path / "two_pickles.pt", records={"data.pkl#2": second})
    assert_refused(cli("score", path, with_torch=False), 3, "'archive/data.pkl' twice")


def test_one_storage_key_with_two_types_is_refused(cli, tmp_path):
    half = Tensor(Storage("w", torch.DoubleStorage, 36), (36,), (1,))
    path = conv_zip(tmp_path / "two_types.pt", extra={"other": half})
    for with_torch in (False, True):
        assert_refused(cli("score", path, with_torch=with_torch), 3, "two types or sizes", "ambiguous")


@pytest.mark.parametrize(
    "name,data_pkl,why",
    [
        # BUILD on the rebuild function itself would set attributes on torch._utils' function
        ("build_on_function", pkl(glob("torch._utils", "_rebuild_tensor_v2"), EMPTY_DICT, BUILD), "BUILD on"),
        ("append_to_bytearray", pkl(glob("builtins", "bytearray"), EMPTY_TUPLE, REDUCE, int1(1), APPEND), "APPEND"),
        ("setitem_on_list", pkl(EMPTY_LIST, int1(0), int1(1), SETITEM), "SETITEM"),
        ("call_a_dtype", pkl(glob("torch", "float32"), EMPTY_TUPLE, REDUCE), "a call of torch.float32"),
    ],
)
def test_what_torchs_unpickler_refuses_is_refused(cli, tmp_path, name, data_pkl, why):
    path = write_zip(tmp_path / f"{name}.pt", data_pkl, {})
    with pytest.raises(Exception, match="Weights only load failed|not callable"):  # torch refuses it too
        torch.load(path, weights_only=True)
    for with_torch, command in [(False, ["score"]), (True, ["prune", "--dry-run"])]:
        assert_refused(cli(*command, path, with_torch=with_torch), 3, "crafted", why)


def test_deflated_records_give_the_stored_values_to_every_command(cli, tmp_path):
    """torch.load(mmap=True) returns a deflated record's compressed bytes as weights: `prune`
    reads it without mmap, so it prunes the values `score` scores."""
    stored = conv_zip(tmp_path / "stored.pt")
    deflated = rezip(stored, tmp_path / "deflated.pt", zipfile.ZIP_DEFLATED)
    assert conv_scores(deflated) == conv_scores(stored)
    loaded = checkpoint.load(deflated)
    assert np.array_equal(loaded.state_dict["conv.weight"].numpy(), CONV)
    for path in (stored, deflated):
        proc = cli("prune", path, "-o", tmp_path / f"{path.stem}_pruned.pt", "--no-skip-first", "--no-skip-last")
        assert proc.returncode == 0, proc.stderr
    pruned = [torch.load(tmp_path / f"{n}_pruned.pt")["state_dict"]["conv.weight"] for n in ("stored", "deflated")]
    assert torch.equal(*pruned)


def test_rebuild_parameter_of_none_reads_as_torch_reads_it(cli, tmp_path):
    empty = Call(torch._utils._rebuild_parameter, None, False, {})
    path = conv_zip(tmp_path / "param_none.pt", extra={"p": empty})
    got = numpy_checkpoint.load(path).state_dict["p"]
    assert got.shape == torch.load(path, weights_only=True)["p"].shape == (0,)
    assert conv_scores(path) == conv_scores(path, cli, with_torch=True)


def test_a_tensor_of_70_dimensions_is_left_to_torch(cli, tmp_path):
    wide = Tensor(Storage("x", torch.FloatStorage, 1), (1,) * 70, (1,) * 70)
    path = conv_zip(tmp_path / "dims70.pt", extra={"x": wide}, records={"data/x": b"\0" * 4})
    assert torch.load(path, weights_only=True)["x"].dim() == 70
    assert_refused(cli("score", path, with_torch=False), 2, "70 dimensions", "needs PyTorch")
    assert score_doc(cli("score", path, "--json"))["layers"][0]["name"] == "conv"


def test_a_meta_tensor_is_one_line_not_a_crash(cli, tmp_path):
    path = tmp_path / "meta.pt"
    torch.save({"conv.weight": torch.empty(4, 2, 3, 3, device="meta")}, path)
    for command in (["score"], ["prune", "--dry-run"]):
        assert_refused(cli(*command, path), 3, "meta device")


# --- 3. bounds: no exit 70, no signal, seconds and a few hundred MB -------------------------------


def test_a_huge_memo_index_costs_nothing(tmp_path):
    """LONG_BINPUT 0x0fffffff made Python's unpickler allocate 2 GiB for a 3 KB file."""
    good = conv_zip(tmp_path / "good.pt")
    with zipfile.ZipFile(good) as z:
        data = z.read("archive/data.pkl")
    assert data.startswith(b"\x80\x02}q\x00")  # PROTO 2, EMPTY_DICT, BINPUT 0 (never fetched)
    path = conv_zip(tmp_path / "memo.pt")
    write_zip(path, b"\x80\x02}r\xff\xff\xff\x0f" + data[5:], {"data/w": CONV.tobytes()})
    assert torch.equal(torch.load(path, weights_only=True)["conv.weight"], torch.from_numpy(CONV))
    assert conv_scores(path) == conv_scores(good)


def test_a_pickle_larger_than_a_structure_needs_is_refused_unread(tmp_path):
    """data.pkl holds names and shapes: 32 MiB is ten times what 100,000 tensors need."""
    path = write_zip(tmp_path / "long.pt", pkl(NONE * (33 << 20)), {})
    assert_refused(run_limited("score", path, with_torch=False), 3, "more than the 32 MiB")


@pytest.mark.parametrize("depth", [5000, 1_000_000])
def test_deeply_nested_tuple_keys_are_refused(tmp_path, depth):
    """A tuple nested a million deep used as a dict key overflowed the C stack (SIGSEGV) in hashing."""
    path = write_zip(tmp_path / f"deep{depth}.pt", pkl(EMPTY_DICT, int1(0), TUPLE1 * depth, NONE, SETITEM), {})
    for with_torch, command in [(False, ["score"]), (True, ["prune", "--dry-run"])]:
        assert_refused(run_limited(*command, path, with_torch=with_torch), 3, "nested more than 100 deep")


def test_a_self_containing_list_is_refused(tmp_path):
    loop = pkl(EMPTY_DICT, text("a"), EMPTY_LIST, b"q\x01", b"h\x01", APPEND, SETITEM)
    path = write_zip(tmp_path / "loop.pt", loop, {})
    assert_refused(run_limited("score", path, with_torch=False), 3, "nests too deeply")


def test_a_stride_0_tensor_cannot_claim_gigabytes(tmp_path):
    """60000x64x3 floats repeating one stored float: 46 MB claimed, a 13.6 GiB Gram matrix to score."""
    one = Tensor(Storage("w", torch.FloatStorage, 1), (60000, 64, 3), (0, 0, 0))
    path = write_zip(tmp_path / "stride0.pt", pickle_with_storages({"conv.weight": one}), {"data/w": b"\0" * 4})
    for with_torch, command in [(False, ["score"]), (True, ["prune", "--dry-run"])]:
        assert_refused(run_limited(*command, path, with_torch=with_torch), 3, "strides that repeat elements")


@pytest.mark.parametrize("record", ["data/w", "byteorder", "data.pkl"])
def test_zip_bombs_are_refused_before_inflating(tmp_path, record):
    """A record deflating to 100 MB from about 100 KB; 4 GB ones cost 8 GiB, then exit 0."""
    big = b"\0" * (100 << 20)
    if record == "data/w":  # the pickle claims a storage of that size, as a real one would
        claim = Tensor(Storage("w", torch.FloatStorage, len(big) // 4), (len(big) // 4,), (1,))
        path = write_zip(tmp_path / "bomb.pt", pickle_with_storages({"x": claim}), {record: big}, deflate=(record,))
    elif record == "byteorder":
        path = conv_zip(tmp_path / "bomb.pt", records={record: big}, deflate=(record,))
    else:
        path = write_zip(tmp_path / "bomb.pt", big, {}, deflate=(record,))
    assert path.stat().st_size < 1 << 20
    for with_torch, command in [(False, ["score"]), (True, ["prune", "--dry-run"])]:
        assert_refused(run_limited(*command, path, with_torch=with_torch), 3, "zip bomb")


# --- safetensors -------------------------------------------------------------------------------

W = {"dtype": "F32", "shape": [4, 2, 3, 3], "data_offsets": [0, 288]}


@pytest.mark.parametrize(
    "name,header,why",
    [
        ("nested", '{"conv.weight": ' + "[" * 100_000 + "]" * 100_000 + "}", "nests more than"),
        ("dtype_list", {"conv.weight": {**W, "dtype": ["F32"]}}, "has the dtype ['F32']"),
        ("dtype_object", {"conv.weight": {**W, "dtype": {"F32": 1}}}, "has the dtype"),
        ("dtype_unknown", {"conv.weight": {**W, "dtype": "XYZ"}}, "which safetensors does not define"),
        ("huge_dims", {"conv.weight": {**W, "shape": [0, 2**62, 2**62], "data_offsets": [0, 0]}}, "shape"),
        ("twice", '{"conv.weight": ' + json.dumps(W) + ', "conv.weight": ' + json.dumps(W) + "}", "twice"),
    ],
)
def test_hostile_safetensors_headers(cli, tmp_path, name, header, why):
    path = write_safetensors(tmp_path / f"{name}.safetensors", header, CONV.tobytes())
    for with_torch, command in [(False, ["score"]), (True, ["score"]), (True, ["prune", "--dry-run"])]:
        assert_refused(cli(*command, path, with_torch=with_torch), 3, why)


def test_a_zero_size_tensor_sharing_an_offset_reads_as_torch_reads_it(cli, tmp_path):
    header = {"conv.weight": W, "empty": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}
    path = write_safetensors(tmp_path / "zero.safetensors", header, CONV.tobytes())
    assert conv_scores(path) == conv_scores(path, cli, with_torch=True)


def test_a_huge_sparse_safetensors_file_is_one_line(tmp_path):
    path = write_safetensors(tmp_path / "sparse.safetensors", {"conv.weight": W}, CONV.tobytes())
    with open(path, "r+b") as f:
        f.truncate(5 << 30)  # 5 GB, sparse: its header covers 288 bytes of it
    assert_refused(run_limited("score", path, with_torch=False), 3, "the file holds")


# --- legacy torch.save files -------------------------------------------------------------------


def _legacy_conv(path, **kw):
    weight = Tensor(Storage("0", torch.FloatStorage, 72), (4, 2, 3, 3), (18, 9, 3, 1))
    return write_legacy(path, {"conv.weight": weight}, ["0"], [CONV.tobytes()], **kw)


def test_legacy_files_read_as_torch_reads_them(cli, tmp_path):
    plain = _legacy_conv(tmp_path / "plain.pt")
    flagged = _legacy_conv(tmp_path / "big_endian.pt", little_endian=False)  # torch ignores the flag
    tail = _legacy_conv(tmp_path / "tail.pt", tail=5 << 30)  # 5 GB of sparse bytes after the storages
    for path in (plain, flagged, tail):
        assert torch.equal(torch.load(path, weights_only=True)["conv.weight"], torch.from_numpy(CONV))
        assert np.array_equal(numpy_checkpoint.load(path).state_dict["conv.weight"], CONV)
    assert conv_scores(flagged) == conv_scores(tail) == conv_scores(plain)


@pytest.mark.parametrize(
    "name,size,keys,why",
    [
        ("list_key", (4, 2, 3, 3), [["0"]], "list of storages"),
        ("huge_size", (0, 2**100), ["0"], "a tensor of size"),
    ],
)
def test_hostile_legacy_files(cli, tmp_path, name, size, keys, why):
    weight = Tensor(Storage("0", torch.FloatStorage, 72), size, (18, 9, 3, 1)[: len(size)])
    path = write_legacy(tmp_path / f"{name}.pt", {"conv.weight": weight}, keys, [CONV.tobytes()])
    for with_torch, command in [(False, ["score"]), (True, ["prune", "--dry-run"])]:
        assert_refused(cli(*command, path, with_torch=with_torch), 3, why)
