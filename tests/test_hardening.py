"""Bad input, failed writes and interruptions across the commands: one-line errors with the
documented exit codes, no traceback, inputs untouched, no half-written output."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil

import pytest
import torch


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def model_pt(tmp_path, data_dir):
    return shutil.copy(data_dir / "mtcnn_pnet.pt", tmp_path / "pnet.pt")


@pytest.fixture
def pruned_pt(tmp_path, model_pt, run_cli):
    out = tmp_path / "pruned.pt"
    assert run_cli("prune", model_pt, "-o", out).exit_code == 0
    return out


@pytest.fixture
def sample_pt(tmp_path):
    """The shipped sample model: an orthocli checkpoint that records its architecture."""
    from pathlib import Path

    return shutil.copy(Path(__file__).parent.parent / "sample_models" / "mnist1d_convnet.pt", tmp_path / "sample.pt")


QUICK_TRAIN = ["--cycles", "0", "--max-epochs", "1", "--max-samples", "100", "--threads", "1"]
WRITERS = ["prune", "reinit", "train", "export"]
ALL = ["score", *WRITERS]


def writers(model_pt, pruned_pt, out, sample_pt=None):
    """Each command that writes a file, as CLI arguments."""
    return {
        "prune": ["prune", model_pt, "-o", out],
        "reinit": ["reinit", pruned_pt, "-o", out],
        "train": ["train", sample_pt, *QUICK_TRAIN, "-o", out],
        "export": ["export", sample_pt, "--format", "pt", "-o", out],
    }


def command_on(command, ckpt, out):
    """`command` reading `ckpt` (and writing `out` where it writes)."""
    return {
        "score": ["score", ckpt],
        "prune": ["prune", ckpt, "-o", out],
        "reinit": ["reinit", ckpt, "-o", out],
        "train": ["train", ckpt, *QUICK_TRAIN, "-o", out],
        "export": ["export", ckpt, "--format", "pt", "-o", out],
    }[command]


def assert_one_line_error(res, code, *texts):
    """The error is the last line on stderr, one line; progress lines (train) may come before, and
    `score`'s machine-readable summary after."""
    assert res.exit_code == code, (res.exit_code, res.stderr)
    lines = [line for line in res.stderr.splitlines() if not line.startswith("orthocli-score: ")]
    assert lines and lines[-1].startswith("Error: ") and res.stderr.count("Error: ") == 1, res.stderr
    assert "Traceback" not in res.stderr
    for t in texts:
        assert t in lines[-1]


@pytest.mark.parametrize("command", WRITERS)
def test_full_disk_leaves_nothing_behind(run_cli, monkeypatch, tmp_path, model_pt, pruned_pt, sample_pt, command):
    before = {p: digest(p) for p in (model_pt, pruned_pt, sample_pt)}

    def full_disk(fd):  # the data went into the page cache; the disk refuses it on flush
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    out = tmp_path / "out.pt"
    res = run_cli(*writers(model_pt, pruned_pt, out, sample_pt)[command])
    monkeypatch.undo()
    assert_one_line_error(res, 5, "No space left on device")
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert {p: digest(p) for p in before} == before


@pytest.mark.parametrize("command", WRITERS)
def test_interrupted_write_leaves_the_old_output(
    run_cli, monkeypatch, tmp_path, model_pt, pruned_pt, sample_pt, command
):
    out = tmp_path / "out.pt"
    out.write_bytes(b"previous result")

    def interrupted(fd):  # Ctrl-C while the file is being written out
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    res = run_cli(*writers(model_pt, pruned_pt, out, sample_pt)[command], "--force")
    monkeypatch.undo()
    assert res.exit_code == 130 and "interrupted" in res.stderr
    assert out.read_bytes() == b"previous result"
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]


@pytest.mark.parametrize("command", WRITERS)
@pytest.mark.parametrize(
    "where, text",
    [
        ("a-file/dir/out.pt", "a-file: is a file, not a folder"),
        ("/proc/orthocli-out.pt", "cannot write"),
        (".", "is a directory"),
    ],
)
def test_unwritable_outputs(run_cli, tmp_path, model_pt, pruned_pt, sample_pt, command, where, text):
    out = tmp_path / where if not where.startswith("/") else where
    (tmp_path / "a-file").write_bytes(b"")  # where a missing folder would be created (test_output_folders.py)
    res = run_cli(*writers(model_pt, pruned_pt, out, sample_pt)[command])
    assert res.exit_code == 5, res.stderr
    if where.startswith("/proc") and not os.access("/proc", os.W_OK):
        text = "directory is not writable"  # refused before writing; root passes that check, then fails to write
    assert text in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("command", ALL)
@pytest.mark.parametrize(
    "content, code",
    [
        (b"", 3),
        (b"\x00" * 64, 3),
        (bytes(range(256)) * 4, 3),
        (b"hello, this is a text file\n", 3),
        (b"PK\x03\x04" + b"\x00" * 40, 3),
    ],
)
def test_bad_input_files(run_cli, tmp_path, command, content, code):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    res = run_cli(*command_on(command, bad, tmp_path / "o.pt"))
    assert_one_line_error(res, code, str(bad))
    assert bad.read_bytes() == content
    assert not (tmp_path / "o.pt").exists()


@pytest.mark.parametrize("command", ["train", "export", "prune"])
def test_nan_weights_and_mismatched_shapes_in_a_model_checkpoint(run_cli, tmp_path, sample_pt, command):
    good = torch.load(sample_pt, weights_only=True)
    nan = {**good, "state_dict": {**good["state_dict"]}}
    nan["state_dict"]["features.conv2.weight"] = good["state_dict"]["features.conv2.weight"].clone()
    nan["state_dict"]["features.conv2.weight"].view(-1)[0] = float("inf")
    torch.save(nan, tmp_path / "nan.pt")
    odd = {**good, "state_dict": {**good["state_dict"], "features.conv2.weight": torch.randn(16, 32, 3)}}
    torch.save(odd, tmp_path / "odd.pt")
    res = run_cli(*command_on(command, tmp_path / "nan.pt", tmp_path / "o.pt"))
    assert_one_line_error(res, 4, "NaN or Inf", "features.conv2")
    res = run_cli(*command_on(command, tmp_path / "odd.pt", tmp_path / "o.pt"))
    assert_one_line_error(res, 4, "do not fit the architecture", "features.conv2.weight")
    assert not (tmp_path / "o.pt").exists()


@pytest.mark.parametrize("command", ["score", "prune"])
def test_nan_weights_and_no_conv_layers(run_cli, tmp_path, command):
    torch.save({"fc.weight": torch.randn(3, 4)}, tmp_path / "linear.pt")
    sd = {"c.weight": torch.randn(4, 2, 3, 3), "d.weight": torch.randn(4, 4, 3, 3), "e.weight": torch.randn(2, 4, 1, 1)}
    sd["d.weight"][1, 0, 0, 0] = float("nan")
    torch.save(sd, tmp_path / "nan.pt")
    extra = ["-o", tmp_path / "o.pt"] if command == "prune" else []
    assert_one_line_error(run_cli(command, tmp_path / "linear.pt", *extra), 4, "no conv layers")
    assert_one_line_error(run_cli(command, tmp_path / "nan.pt", *extra), 4, "'d'", "NaN")
    assert not (tmp_path / "o.pt").exists()


def test_a_crafted_pickle_never_runs(run_cli, tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": {"c.weight": torch.randn(2, 1, 3, 3)}, "payload": Evil()}, tmp_path / "evil.pt")
    for command in ALL:
        res = run_cli(*command_on(command, tmp_path / "evil.pt", tmp_path / "o.pt"))
        assert_one_line_error(res, 6, "--trust", "run code")
        assert f"({os.system.__module__}.system)" in res.stderr  # the global the pickle names: posix.system here
    assert not marker.exists()


@pytest.mark.parametrize(
    "command",
    [
        ["prune", "--dry-run"],
        ["export", "-o", "{tmp}/e.safetensors"],
        ["train", "--cycles", "0", "--max-epochs", "1", "-o", "{tmp}/t.pt"],
    ],
)
def test_a_recorded_architecture_runs_no_code_without_trust(run_cli, tmp_path, command):
    """A checkpoint records `{"name": "callable", "target": "os:system", "args": {"command": ...}}`:
    building that model would run the command. Without --trust nothing is imported or run (exit 6)."""
    import torch

    import orthocli.checkpoints.checkpoint as checkpoint

    marker = tmp_path / "ran"
    arch = {"name": "callable", "target": "os:system", "args": {"command": f"touch {marker}"}}
    state = {"conv1.weight": torch.randn(4, 1, 3, 3), "conv2.weight": torch.randn(4, 4, 3, 3)}
    path = tmp_path / "evil.pt"
    checkpoint.save(path, checkpoint.make_payload(state, arch=arch))
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    res = run_cli(args[0], path, *args[1:])
    assert res.exit_code == 6, res.stderr
    assert "records the architecture 'os:system'" in res.stderr and "--trust" in res.stderr
    assert not marker.exists()
