"""Checkpoints in safetensors: every command that writes a checkpoint writes safetensors for a
.safetensors name (a torch zip for .pt), the whole pipeline runs on safetensors files alone with
the same results as on .pt files and never writes a pickle, and readers go by content."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from score_helpers import assert_error

import orthocli.checkpoints.checkpoint as ckpt_io

SMALL = ["--threads", "1", "--max-samples", "120", "--batch-size", "32", "--deterministic"]
TRAIN = [*SMALL, "--width", "4", "--s1", "1", "--s2", "1", "--cycles", "2", "--max-epochs", "5"]


pytestmark = pytest.mark.usefixtures("one_thread")


def is_safetensors(path: Path) -> bool:
    """A real safetensors file: not a zip, not a pickle, and safetensors itself opens it."""
    # A torch zip starts with a local file header; a pickle fails safe_open below. (The first byte alone
    # says nothing: a safetensors header of 0x880 bytes starts with 0x80, as a pickle does.)
    if path.read_bytes()[:4] == b"PK\x03\x04":
        return False
    with safe_open(str(path), framework="pt") as f:
        f.keys()
    return True


def pipeline(cli_json, folder: Path, ext: str) -> dict[str, Path]:
    """train (with --save-cycles and --baseline) -> prune -> train the sub-network -> reinit ->
    train -> export (as orthocli checkpoint and safetensors), every file named with `ext`."""
    folder.mkdir()
    f = {name: folder / f"{name}{ext}" for name in ("trained", "pruned", "sub", "reinit", "final", "export")}
    cli_json("train", *TRAIN, "--save-cycles", "--baseline", "-o", f["trained"])
    cli_json("prune", f["trained"], "--ratio", "0.1", "-o", f["pruned"])  # a fixed ratio drops from any model
    cli_json("train", f["pruned"], *SMALL, "--s2", "1", "-o", f["sub"])
    cli_json("reinit", f["sub"], "-o", f["reinit"], "--seed", "3")
    cli_json("train", f["reinit"], *SMALL, "--cycles", "0", "--max-epochs", "1", "-o", f["final"])
    cli_json("export", f["final"], "-o", f["export"], "--format", "orthocli")
    cli_json("export", f["final"], "-o", folder / "deploy.safetensors")
    return f


def same(a, b) -> bool:
    """Equal values, tensors compared exactly (NaN equal to NaN)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def without_paths(extras: dict) -> dict:
    """The extras without what names a file (the config's checkpoint path, a foreign source's path)."""
    extras = dict(extras)
    extras["config"] = {k: v for k, v in extras.get("config", {}).items() if k != "checkpoint"}
    return {k: v for k, v in extras.items() if k not in ("history", "source")}


def test_the_pipeline_in_safetensors_matches_pt_and_writes_no_pickle(cli_json, tmp_path):
    st = pipeline(cli_json, tmp_path / "st", ".safetensors")
    written = sorted(p.name for p in (tmp_path / "st").iterdir())
    assert written == sorted(
        [f"{n}.safetensors" for n in st]
        + ["deploy.safetensors", "trained.baseline.safetensors"]
        + [f"trained.cycle{c}.safetensors" for c in (1, 2)]
    )  # no state file or temporary file left
    for name in written:
        assert is_safetensors(tmp_path / "st" / name), name

    pt = pipeline(cli_json, tmp_path / "pt", ".pt")
    for name in pt:
        assert zipfile.is_zipfile(pt[name]), name  # .pt: torch.save's zip archive
        a, b = ckpt_io.load(st[name]), ckpt_io.load(pt[name])
        assert a.format == "safetensors" and b.format == "torch-zip"
        assert same(a.state_dict, b.state_dict), name  # the same weights after every step
        assert same(without_paths(a.extras), without_paths(b.extras)), name  # arch, config, data, records
        assert [e["val_acc"] for e in a.extras["history"]] == [e["val_acc"] for e in b.extras["history"]]

    pruned = ckpt_io.load(st["pruned"])
    record = pruned.extras["prune"]
    assert record["layers"] and all(layer["dropped"].dtype == torch.long for layer in record["layers"].values())
    trained = ckpt_io.load(st["trained"]).state_dict
    for layer in record["layers"].values():  # the pre-drop values, read back exactly
        for ch in layer["channels"]:
            assert torch.equal(ch["old"], trained[ch["key"]].index_select(ch["dim"], layer["dropped"]))
    assert ckpt_io.load(st["reinit"]).extras["reinit"]["seed"] == 3 and "prune" not in ckpt_io.load(st["reinit"]).extras
    with safe_open(str(st["pruned"]), framework="pt") as f:  # the documented layout
        doc = json.loads(f.metadata()["orthocli"])
        names = set(f.keys())
    assert doc["format"] == "orthocli" and doc["arch"]["name"] == "convnet" and doc["data"]["mean"]
    ref = doc["prune"]["layers"][next(iter(record["layers"]))]["dropped"]["$tensor"]
    assert ref.startswith("orthocli/prune/layers/") and ref in names
    assert set(pruned.state_dict) == {k for k in names if not k.startswith("orthocli/")}


def test_interrupted_run_in_safetensors_resumes_from_a_safetensors_state(cli_json, run_cli, tmp_path, monkeypatch):
    adam = ["--optimizer", "adam"]  # its state holds tuples, integer keys and tensors
    full = cli_json("train", *TRAIN, *adam, "--save-cycles", "-o", tmp_path / "full.safetensors")
    real = ckpt_io.save
    states = []

    def interrupt(path, payload, **kw):
        if Path(path).name.endswith(".state"):
            states.append(is_safetensors(real(path, payload, **kw)))
            return path
        if Path(path).name == "run.cycle2.safetensors":  # a state was saved at the end of each epoch before
            raise KeyboardInterrupt
        return real(path, payload, **kw)

    monkeypatch.setattr(ckpt_io, "save", interrupt)
    out = tmp_path / "run.safetensors"
    first = run_cli("train", *TRAIN, *adam, "--save-cycles", "--state-every", "0", "-o", out)
    assert first.exit_code == 130, first.stderr
    assert states and all(states)
    state = tmp_path / "run.safetensors.state"
    assert is_safetensors(state)
    monkeypatch.setattr(ckpt_io, "save", real)
    again = cli_json("train", "-o", out, "--resume")
    assert again["val_accuracy"] == full["val_accuracy"]
    a, b = ckpt_io.load(tmp_path / "full.safetensors"), ckpt_io.load(out)
    assert same(a.state_dict, b.state_dict)
    assert not state.exists()


def test_every_value_a_checkpoint_holds_reads_back_as_written(tmp_path):
    shared = torch.arange(6.0)
    payload = ckpt_io.make_payload(
        {"conv.weight": torch.randn(2, 1, 3, 3), "tied.a": shared, "tied.b": shared, "view": shared[1:4]},
        optimizer={
            "state": {0: {"momentum_buffer": torch.ones(2), "step": torch.tensor(3.0)}},
            "param_groups": [{"params": [0, 1], "betas": (0.9, 0.999), "lr": 0.1, "foreach": None}],
        },
        rng=torch.randint(0, 255, (10,), dtype=torch.uint8),
        history=[{"val_loss": float("nan"), "best": float("inf"), "low": float("-inf")}],
        odd={"$tensor": "not a reference", "a/b": torch.zeros(1), "a": {"b": torch.ones(1)}, 3: [True, None]},
        empty=torch.zeros(0, 3, dtype=torch.int64),
        half=torch.randn(3).to(torch.bfloat16),
    )
    path = ckpt_io.save(tmp_path / "x.safetensors", payload)
    assert is_safetensors(path)
    back = ckpt_io.load(path)
    assert same(back.state_dict, payload["state_dict"])
    assert same(back.extras, {k: v for k, v in payload.items() if k != "state_dict"})


def test_a_payload_safetensors_cannot_hold_is_refused_and_nothing_written(tmp_path):
    from orthocli.errors import CheckpointError

    with pytest.raises(CheckpointError, match=r"'meta/when' is of type object.*write a \.pt file"):
        ckpt_io.save(tmp_path / "x.safetensors", ckpt_io.make_payload({}, meta={"when": object()}))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "doc, message",
    [
        ('{"prune": {"$tensor": "orthocli/prune/gone"}}', "names a tensor the file lacks ('orthocli/prune/gone')"),
        ('{"history": {"$dict": 5}}', "its orthocli metadata is damaged"),
        ('{"history": [{"$float": "many"}]}', "its orthocli metadata is damaged"),
        ("[1, 2]", "its orthocli metadata is damaged (not a JSON object)"),
        ("[" * 100_000, "its orthocli metadata is damaged"),
    ],
)
def test_damaged_metadata_is_one_line_exit_3(run_cli, tmp_path, tiny_state_dict, doc, message):
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    save_file(tiny_state_dict, str(path), metadata={"orthocli": doc})
    assert_error(run_cli("score", path), 3, message, "re-download")


def test_readers_go_by_content_not_name(cli_json, tmp_path, tiny_state_dict):
    payload = ckpt_io.make_payload(tiny_state_dict, data={"mean": [0.5]})
    zip_named_st, st_named_pt = tmp_path / "zip.safetensors", tmp_path / "st.pt"
    torch.save(payload, zip_named_st)  # a torch zip under a .safetensors name
    st_named_pt.write_bytes((ckpt_io.save(tmp_path / "real.safetensors", payload)).read_bytes())
    for path, fmt in ((zip_named_st, "torch-zip"), (st_named_pt, "safetensors")):
        ckpt = ckpt_io.load(path)
        assert ckpt.format == fmt and same(ckpt.state_dict, tiny_state_dict) and ckpt.extras["data"] == {"mean": [0.5]}
        doc = cli_json("score", path)["checkpoints"][0]
        assert doc["format"] == fmt and [layer["name"] for layer in doc["layers"]] == ["conv1", "conv2"]
    # each command's output follows its own name, whatever the input was (two convs: the last one may drop)
    cli_json("prune", zip_named_st, "-o", tmp_path / "p.safetensors", "--ratio", "0.5", "--no-skip-last")
    cli_json("prune", st_named_pt, "-o", tmp_path / "p.pt", "--ratio", "0.5", "--no-skip-last")
    assert is_safetensors(tmp_path / "p.safetensors") and zipfile.is_zipfile(tmp_path / "p.pt")
    a, b = ckpt_io.load(tmp_path / "p.safetensors"), ckpt_io.load(tmp_path / "p.pt")
    assert same(a.state_dict, b.state_dict) and same(a.extras["prune"], b.extras["prune"])
