"""`orthocli score`'s torch-free reader (numpy_checkpoint.py and the modules under it) against
torch's: the same arrays, bit for bit, and the same scores as torch's math (within 1e-6), on every
real checkpoint the tests hold, every dtype, every wrapper; bad input refused in one line with the
documented code, and nothing in a pickle ever run."""

from __future__ import annotations

import json
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from score_helpers import assert_error, score_json
from torch_files import (
    LFS_POINTER,
    ROOT,
    StorageRef,
    Tensor,
    rewrite_zip,
    run_without_torch,
    torch_scores,
    write_zip,
)

import orthocli.checkpoints.checkpoint as checkpoint
import orthocli.checkpoints.numpy_checkpoint as numpy_checkpoint
from orthocli.arrays import BFLOAT16, as_float
from orthocli.checkpoints.model import CheckpointModel
from orthocli.errors import CheckpointError, InputFileError, NeedsTorch, TrustError
from orthocli.scoring.checkpoint_scores import score_checkpoint

REAL = [
    ROOT / "tests" / "data" / "crepe_tiny.pt",  # torch zip
    ROOT / "tests" / "data" / "mtcnn_pnet.pt",  # legacy pickle
    ROOT / "tests" / "data" / "mtcnn_onet.pt",  # legacy pickle
    ROOT / "tests" / "data" / "lpips_alex.pth",  # legacy pickle
    ROOT / "sample_models" / "mnist1d_convnet.pt",  # orthocli, torch zip, records its architecture
    ROOT / "sample_models" / "mnist1d_convnet.safetensors",  # orthocli, safetensors with metadata
]


def assert_same_arrays(got: dict, want: dict) -> None:
    """The numpy reader's state dict holds torch's tensors, in torch's order, bit for bit."""
    assert list(got) == list(want)
    for k, t in want.items():
        a = got[k]
        assert isinstance(a, np.ndarray) and tuple(a.shape) == tuple(t.shape), k
        if t.dtype == torch.bfloat16:
            assert a.dtype == BFLOAT16
            assert np.array_equal(as_float(a), t.float().numpy()), k
        else:
            assert np.array_equal(a, t.numpy()), k


def assert_scores_match_torch(path: Path, **load) -> None:
    """score_checkpoint (numpy, no torch) against torch.load and torch's math: the same layers,
    every score within 1e-6."""
    got = score_checkpoint(path, numpy_options(**load))
    want = CheckpointModel(checkpoint.load(path, **load)).convs()
    assert [r.layer.name for r in got.layers] == [c.name for c in want]
    for r, c in zip(got.layers, want):
        assert (r.layer.groups, r.layer.transposed, r.layer.known) == (c.groups, c.transposed, c.known)
        reference = torch_scores(c.weight, c.groups, c.transposed).double().numpy()
        np.testing.assert_allclose(np.asarray(r.scores, np.float64), reference, atol=1e-6, rtol=0)


def numpy_options(**load):
    from orthocli.scoring.checkpoint_scores import ScoreOptions

    return ScoreOptions(key=load.get("key"), trust=load.get("trust", False))


# --- every real checkpoint --------------------------------------------------------------------


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_real_checkpoints_read_as_torch_reads_them(path):
    got, want = numpy_checkpoint.load(path), checkpoint.load(path)
    assert got.format == want.format
    assert_same_arrays(got.state_dict, want.state_dict)
    assert json.dumps(got.extras, sort_keys=True, default=str) == json.dumps(want.extras, sort_keys=True, default=str)
    assert_scores_match_torch(path)


def test_the_sample_models_layout_is_known_without_building_them():
    for path in REAL[-2:]:
        layers = score_checkpoint(path).layers
        assert [r.layer.name for r in layers] == ["features.conv1", "features.conv2", "features.conv3"]
        assert all(r.layer.known for r in layers)


def test_the_built_in_architectures_are_plain_convs_in_natural_order():
    """What lets numpy_checkpoint know their layout without torch: every conv plain, and the
    network's order that of the names, numbers compared as numbers (safetensors files list
    tensors by size and name)."""
    from orthocli.network.layers import convs_from_module
    from orthocli.network.models import BUILTIN, arch_spec, build_model

    assert set(numpy_checkpoint.PLAIN_ARCHITECTURES) == set(BUILTIN)
    for name, options in (("convnet", {"depth": 12}), ("resnet20", {"blocks": 11})):
        model = build_model(arch_spec(name, in_channels=1, num_classes=3, input_shape=[4096], **options))
        convs = convs_from_module(model)
        assert all(c.groups == 1 and not c.transposed for c in convs)
        assert [c.name for c in convs] == sorted((c.name for c in convs), key=numpy_checkpoint._natural)
        assert [c.name for c in convs] != sorted(c.name for c in convs)  # plain sorting would not do


def test_a_users_own_architecture_is_guessed_without_trust_and_says_so(tmp_path):
    """A recorded `module:callable` is the user's code: not built without --trust."""
    marker = tmp_path / "built"
    payload = checkpoint.make_payload(
        {"c.weight": torch.randn(4, 2, 3)},
        arch={"name": "callable", "target": "os:system", "args": {"command": f"touch {marker}"}},
    )
    torch.save(payload, tmp_path / "user.pt")
    result = score_checkpoint(tmp_path / "user.pt")
    assert not marker.exists()
    assert [(r.layer.name, r.layer.known) for r in result.layers] == [("c", False)]
    assert len(result.notes) == 1 and "os:system" in result.notes[0] and "--trust" in result.notes[0]


# --- dtypes and formats -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fmt", ["zip", "legacy", "safetensors"])
def test_every_dtype_in_every_format(save_ckpt, tiny_state_dict, dtype, fmt):
    sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tiny_state_dict.items()}
    path = save_ckpt(sd, fmt)
    assert_same_arrays(numpy_checkpoint.load(path).state_dict, checkpoint.load(path).state_dict)
    assert_scores_match_torch(path)
    scores = score_checkpoint(path).layers[0].scores
    assert scores.dtype == (np.float64 if dtype == torch.float64 else np.float32)


def test_integer_bool_and_complex_tensors_beside_the_weights(save_ckpt, tiny_state_dict):
    sd = {
        **tiny_state_dict,
        "bn.num_batches_tracked": torch.tensor(7),
        "mask": torch.tensor([True, False, True]),
        "codes": torch.arange(-3, 3, dtype=torch.int8),
        "u16": torch.arange(5).to(torch.uint16),
        "spectrum": torch.randn(3, dtype=torch.complex64),
    }
    for fmt in ("zip", "legacy"):
        if fmt == "legacy":
            sd.pop("u16")  # the legacy format has no uint16 storage
        path = save_ckpt(sd, fmt, name=f"mixed.{fmt}")
        assert_same_arrays(numpy_checkpoint.load(path).state_dict, checkpoint.load(path).state_dict)


def test_views_and_shared_storages(tmp_path):
    """Tensors that are views of one storage (a slice, a transpose, tied weights) come out as torch sees them."""
    base = torch.randn(6, 4, 3)
    sd = {"a.weight": base, "b.weight": base[2:5], "c.weight": base.transpose(0, 1), "tied.weight": base}
    for legacy in (False, True):
        path = tmp_path / f"views{legacy}.pt"
        torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
        assert_same_arrays(numpy_checkpoint.load(path).state_dict, checkpoint.load(path).state_dict)


def test_a_big_endian_archive(tmp_path, tiny_state_dict):
    """The zip records its byte order: a file written on a big-endian machine reads the same."""
    little = tmp_path / "little.pt"
    torch.save(tiny_state_dict, little)
    import zipfile

    with zipfile.ZipFile(little) as z:
        swapped = {}
        for name in z.namelist():
            if "/data/" in name and not name.endswith("/"):
                swapped[name.split("archive/")[-1]] = np.frombuffer(z.read(name), "<f4").byteswap().tobytes()
    big = rewrite_zip(little, tmp_path / "big.pt", replace={"byteorder": b"big", **swapped})
    assert_same_arrays(numpy_checkpoint.load(big).state_dict, checkpoint.load(little).state_dict)


def test_float8_weights_are_read_by_torch_where_it_is_installed(tmp_path):
    sd = {"c.weight": torch.randn(4, 2, 3, 3).to(torch.float8_e4m3fn)}
    torch.save(sd, tmp_path / "f8.pt")
    ckpt = numpy_checkpoint.load(tmp_path / "f8.pt")
    assert isinstance(ckpt.state_dict["c.weight"], torch.Tensor)  # torch read it
    assert_scores_match_torch(tmp_path / "f8.pt")


# --- wrappers -----------------------------------------------------------------------------------


def _wrappers(sd: dict) -> dict:
    return {
        "nested": ({"model": {"net": sd}, "epoch": 3}, None),
        "lightning-like": (
            {
                "epoch": 7,
                "global_step": 700,
                "state_dict": {f"model.{k}": v for k, v in sd.items()},
                "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 0.1}]}],
                "hyper_parameters": {"lr": 0.01, "widths": (8, 16), "name": "tiny", "dropout": None},
            },
            None,
        ),
        "key": ({"model": sd, "ema": {k: v * 0.5 for k, v in sd.items()}}, "ema"),
        "dotted-key": ({"weights": {"raw": sd, "ema": sd}}, "weights.raw"),
    }


@pytest.mark.parametrize("kind", ["nested", "lightning-like", "key", "dotted-key"])
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_wrappers_unwrap_as_torch_unwraps_them(save_ckpt, tiny_state_dict, kind, fmt):
    obj, key = _wrappers(tiny_state_dict)[kind]
    path = save_ckpt(obj, fmt)
    got, want = numpy_checkpoint.load(path, key=key), checkpoint.load(path, key=key)
    assert got.key == want.key
    assert_same_arrays(got.state_dict, want.state_dict)
    assert_scores_match_torch(path, key=key)


def test_an_ambiguous_wrapper_is_the_same_error(save_ckpt, tiny_state_dict):
    path = save_ckpt({"model": tiny_state_dict, "ema": tiny_state_dict, "epoch": 3})
    for loader in (checkpoint.load, numpy_checkpoint.load):
        with pytest.raises(CheckpointError, match="--key"):
            loader(path)
        with pytest.raises(CheckpointError, match="no key 'nope'"):
            loader(path, key="nope")


def test_a_real_lightning_checkpoint(tmp_path):
    L = pytest.importorskip("lightning")

    class Module(L.LightningModule):
        def __init__(self, width: int = 4):
            super().__init__()
            self.save_hyperparameters()
            self.conv = torch.nn.Conv2d(1, width, 3)
            self.fc = torch.nn.Linear(width, 2)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))

        def training_step(self, batch, _):
            x, y = batch
            return torch.nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters())

    data = torch.utils.data.TensorDataset(torch.randn(8, 1, 5, 5), torch.randint(0, 2, (8,)))
    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(Module(), torch.utils.data.DataLoader(data, batch_size=4))
    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(path)
    got = numpy_checkpoint.load(path)
    assert got.key == "state_dict"
    assert_same_arrays(got.state_dict, checkpoint.load(path).state_dict)
    assert_scores_match_torch(path)


def test_score_json_is_the_same_through_either_reader(run_cli, data_dir, monkeypatch):
    """The CLI's document, read without torch, against the same command with torch reading."""
    for path in (data_dir / "crepe_tiny.pt", data_dir / "mtcnn_onet.pt"):
        fast = score_json(run_cli, path)
        monkeypatch.setattr(numpy_checkpoint, "load", checkpoint.load)
        slow = score_json(run_cli, path)
        monkeypatch.undo()
        for a, b in zip(fast["layers"], slow["layers"]):
            assert a["name"] == b["name"]
            np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-6, rtol=0)


# --- the restricted unpickler: nothing runs -----------------------------------------------------


class _Creates:
    """Unpickling this would create a file: proof that code from the file ran."""

    def __init__(self, marker: Path, how: str) -> None:
        self.marker, self.how = marker, how

    def __reduce__(self):
        import os

        if self.how == "open":
            return (open, (str(self.marker), "w"))
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["open", "system"])
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_a_pickle_naming_code_is_refused_and_never_run(run_cli, tmp_path, how, fmt):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = {"state_dict": {"c.weight": torch.randn(4, 2, 3)}, "extra": _Creates(marker, how)}
    torch.save(payload, path, _use_new_zipfile_serialization=fmt == "zip")
    with pytest.raises(TrustError, match="--trust"):
        numpy_checkpoint.load(path)
    line = assert_error(run_cli("score", path), 6, str(path), "--trust", "run code")
    assert ("io.open" if how == "open" else ".system") in line  # the global the pickle names
    assert not marker.exists()


def test_a_global_torch_also_refuses_is_refused_before_unpickling(tmp_path):
    """The check reads the pickle's opcodes first: a refused global anywhere, even after the
    tensors, means nothing at all is unpickled."""
    marker = tmp_path / "pwned"
    storage = StorageRef("0", torch.FloatStorage, 4)
    obj = {"c.weight": Tensor(storage, 0, (4, 1, 1), (1, 1, 1)), "z": _Creates(marker, "open")}
    path = write_zip(tmp_path / "late.pt", obj, {"0": np.zeros(4, "<f4").tobytes()})
    with pytest.raises(TrustError, match=r"\(io\.open\)"):
        numpy_checkpoint.load(path)
    assert not marker.exists()


def test_a_pickle_protocol_torch_does_not_read_needs_trust(tmp_path, tiny_state_dict):
    path = tmp_path / "p4.pt"
    torch.save(tiny_state_dict, path, pickle_protocol=4)
    for loader in (checkpoint.load, numpy_checkpoint.load):
        with pytest.raises(TrustError, match="--trust"):
            loader(path)
    assert_same_arrays(  # and with --trust torch reads it
        {k: v.numpy() for k, v in numpy_checkpoint.load(path, trust=True).state_dict.items()}, tiny_state_dict
    )


def test_a_trusted_module_is_read_by_torch(save_ckpt, tiny_model):
    path = save_ckpt(tiny_model)
    with pytest.raises(TrustError):
        numpy_checkpoint.load(path)
    ckpt = numpy_checkpoint.load(path, trust=True)
    assert ckpt.format == "module" and ckpt.module is not None


# --- bad input: one line, a documented code -----------------------------------------------------


def test_a_git_lfs_pointer(run_cli, tmp_path):
    path = tmp_path / "model.pt"
    path.write_text(LFS_POINTER)
    line = assert_error(run_cli("score", path), 3, str(path), "Git LFS pointer", "git lfs pull")
    assert "not the checkpoint" in line
    with pytest.raises(InputFileError, match="Git LFS pointer"):
        checkpoint.load(path)  # every command says so
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "b.pt").write_text(LFS_POINTER)
    torch.save({"c.weight": torch.eye(4).reshape(4, 4, 1)}, folder / "a.pt")
    result = run_cli("score", folder, "--json")
    assert result.exit_code == 3
    assert [e["exit_code"] for e in json.loads(result.stdout)["checkpoints"]] == [0, 3]


def _tensor_zip(tmp_path, name: str, size: tuple, stride: tuple, numel: int, data: bytes) -> Path:
    storage = StorageRef("0", torch.FloatStorage, numel)
    return write_zip(tmp_path / name, {"c.weight": Tensor(storage, 0, size, stride)}, {"0": data})


def test_hand_written_archives_read_as_torch_reads_them(tmp_path):
    values = np.arange(24, dtype="<f4")
    path = _tensor_zip(tmp_path, "ok.pt", (4, 2, 3), (6, 3, 1), 24, values.tobytes())
    assert_same_arrays(numpy_checkpoint.load(path).state_dict, checkpoint.load(path).state_dict)


@pytest.mark.parametrize(
    "case, message",
    [
        ("storage-too-short", "holds 40 bytes where data.pkl says 96"),
        ("shape-past-storage", "needs 800 bytes of storage '0', which holds 96"),
        ("missing-storage", "names the storage 'data/0', which the archive lacks"),
        ("truncated-zip", "damaged or truncated"),
        ("truncated-pickle", "damaged or cut short"),
    ],
)
def test_damaged_archives(run_cli, tmp_path, case, message):
    good = np.arange(24, dtype="<f4").tobytes()
    if case == "storage-too-short":
        path = _tensor_zip(tmp_path, "c.pt", (4, 2, 3), (6, 3, 1), 24, good[:40])
    elif case == "shape-past-storage":
        path = _tensor_zip(tmp_path, "c.pt", (10, 2, 10), (20, 10, 1), 24, good)
    elif case == "missing-storage":
        path = rewrite_zip(
            _tensor_zip(tmp_path, "w.pt", (4, 2, 3), (6, 3, 1), 24, good), tmp_path / "c.pt", ("data/0",)
        )
    elif case == "truncated-zip":
        whole = _tensor_zip(tmp_path, "w.pt", (4, 2, 3), (6, 3, 1), 24, good).read_bytes()
        path = tmp_path / "c.pt"
        path.write_bytes(whole[: len(whole) // 2])
    else:
        whole = _tensor_zip(tmp_path, "w.pt", (4, 2, 3), (6, 3, 1), 24, good)
        import zipfile

        with zipfile.ZipFile(whole) as z:
            pkl = z.read("archive/data.pkl")
        path = rewrite_zip(whole, tmp_path / "c.pt", replace={"data.pkl": pkl[: len(pkl) // 2]})
    with pytest.raises(InputFileError, match=message.split("(")[0][:30]):
        numpy_checkpoint.load(path)
    assert_error(run_cli("score", path), 3, str(path), message)


def _safetensors_with_header(tmp_path, header: dict | bytes, data: bytes, claimed: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path = tmp_path / "h.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw) if claimed is None else claimed) + raw + data)
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("huge-length", "header claims"),
        ("offsets-past-end", "cover 800 bytes of data, the file holds 96"),
        ("shape-lies", "has 96 bytes"),
        ("gap", "'b' starts at byte 60 of the data, not at 48"),
        ("not-json", "not JSON"),
        ("bad-shape", "has the shape"),
    ],
)
def test_lying_safetensors_headers(run_cli, tmp_path, case, message):
    data = np.zeros(24, "<f4").tobytes()
    entry = {"dtype": "F32", "shape": [4, 2, 3], "data_offsets": [0, 96]}
    if case == "huge-length":
        path = _safetensors_with_header(tmp_path, {"c.weight": entry}, data, claimed=2**40)
        path.write_bytes(path.read_bytes()[:8] + b"{" + path.read_bytes()[9:])
    elif case == "offsets-past-end":
        path = _safetensors_with_header(
            tmp_path, {"c.weight": {**entry, "shape": [10, 2, 10], "data_offsets": [0, 800]}}, data
        )
    elif case == "shape-lies":
        path = _safetensors_with_header(tmp_path, {"c.weight": {**entry, "shape": [4, 2, 4]}}, data)
    elif case == "gap":
        half = {"dtype": "F32", "shape": [12], "data_offsets": [0, 48]}
        path = _safetensors_with_header(tmp_path, {"a": half, "b": {**half, "data_offsets": [60, 108]}}, data)
    elif case == "not-json":
        path = _safetensors_with_header(tmp_path, b"{nope" + b" " * 20, data)
    else:
        path = _safetensors_with_header(tmp_path, {"c.weight": {**entry, "shape": [4, -2, 3]}}, data)
    assert_error(run_cli("score", path), 3, str(path))
    if case != "huge-length":  # a length past the file is not even sniffed as safetensors
        with pytest.raises(InputFileError, match=message):
            numpy_checkpoint.load(path)


def test_a_truncated_legacy_file(run_cli, tmp_path, data_dir):
    data = (data_dir / "mtcnn_pnet.pt").read_bytes()
    for keep in (0.05, 0.5, 0.99):
        path = tmp_path / f"cut{keep}.pt"
        path.write_bytes(data[: int(len(data) * keep)])
        with pytest.raises(InputFileError):
            numpy_checkpoint.load(path)
        assert_error(run_cli("score", path), 3, str(path))


# --- without torch ------------------------------------------------------------------------------


def test_without_torch_score_reads_every_format_with_the_same_scores(run_cli, tmp_path, data_dir, tiny_state_dict):
    sd = dict(tiny_state_dict)
    sd["conv1.weight"] = sd["conv1.weight"].bfloat16()
    torch.save(sd, tmp_path / "bf16.pt")
    files = [*REAL, tmp_path / "bf16.pt"]
    proc = run_without_torch("score", *files, "--json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("orthocli-score: files=7 scored=7 ")
    without = json.loads(proc.stdout)
    with_torch = json.loads(run_cli("score", *files, "--json").stdout)
    assert without == with_torch  # numpy either way: the same document


def test_without_torch_what_needs_it_says_how_to_get_it(tmp_path, data_dir, save_ckpt, tiny_model):
    proc = run_without_torch("score", data_dir / "silero_vad.jit")
    assert proc.returncode == 6  # loading TorchScript runs its code: --trust first, with or without torch
    assert proc.stderr.splitlines()[0] == (
        f"Error: {data_dir / 'silero_vad.jit'}: a TorchScript archive; loading it runs code the file holds (its "
        "methods and __setstate__). If you trust where it came from, rerun with --trust"
    )
    proc = run_without_torch("score", data_dir / "silero_vad.jit", data_dir / "crepe_tiny.pt", "--trust")
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert lines[0] == (
        f"Error: {data_dir / 'silero_vad.jit'}: a TorchScript archive needs PyTorch, which is not installed: "
        "pip install 'orthocli[torch]'"
    )
    module = save_ckpt(tiny_model)
    proc = run_without_torch("score", module, "--trust")
    assert proc.returncode == 2 and "--trust" in proc.stderr and "pip install 'orthocli[torch]'" in proc.stderr
    for command in (
        ["train", "--cycles", "0"],
        ["prune", data_dir / "mtcnn_pnet.pt"],
        ["export", module, "-o", tmp_path / "x.pt"],
    ):
        proc = run_without_torch(*command)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            f"Error: orthocli {command[0]} needs PyTorch, which is not installed: pip install 'orthocli[torch]'"
        ]
    assert run_without_torch("--help").returncode == 0


def test_needs_torch_is_a_usage_error():
    e = NeedsTorch("orthocli train")
    assert e.exit_code == 2 and str(e).endswith("pip install 'orthocli[torch]'")


def test_read_only_arrays(tmp_path, tiny_state_dict):
    """The arrays view the file: nothing can write through them."""
    path = tmp_path / "m.pt"
    torch.save(OrderedDict(tiny_state_dict), path)
    a = numpy_checkpoint.load(path).state_dict["conv1.weight"]
    with pytest.raises(ValueError):
        a[0, 0, 0, 0] = 1.0


def test_the_unpicklers_globals_and_opcodes_are_a_subset_of_torchs():
    """What the restricted unpickler accepts, torch.load(weights_only=True) accepts too."""
    from torch import _weights_only_unpickler as torch_unpickler

    import orthocli.checkpoints.readers.torch_pickle as torch_pickle

    assert set(torch_pickle.ALLOWED) <= set(torch_unpickler._get_allowed_globals())
    assert set(torch_pickle.TORCH_ONLY) <= set(torch_unpickler._get_allowed_globals())
    ours = {torch_pickle._OTHER_OPCODES[op] for op in [*torch_pickle._FIXED, *torch_pickle._BARE]}
    ours |= {"STOP", "GLOBAL", "BINUNICODE", "LONG1", "SHORT_BINSTRING"}
    import inspect
    import re

    theirs = set(re.findall(r"key\[0\] == ([A-Z_0-9]+)\[0\]", inspect.getsource(torch_unpickler)))
    theirs |= {"LONG_BINGET", "LONG_BINPUT"}  # handled beside BINGET and BINPUT: `in [BINGET[0], LONG_BINGET[0]]`
    assert ours <= theirs
