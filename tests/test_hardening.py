"""Bad input, failed writes and interruptions across the commands: one-line errors with the
documented exit codes, no traceback, inputs untouched, no half-written output."""

from __future__ import annotations

import errno
import hashlib
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


def writers(model_pt, pruned_pt, out):
    """Each command that writes a file, as CLI arguments."""
    return {
        "prune": ["prune", model_pt, "-o", out],
        "reinit": ["reinit", pruned_pt, "-o", out],
    }


def assert_one_line_error(res, code, *texts):
    assert res.exit_code == code, (res.exit_code, res.stderr)
    assert res.stderr.startswith("Error: ") and res.stderr.count("\n") == 1, res.stderr
    assert "Traceback" not in res.stderr
    for t in texts:
        assert t in res.stderr


@pytest.mark.parametrize("command", ["prune", "reinit"])
def test_full_disk_leaves_nothing_behind(run_cli, monkeypatch, tmp_path, model_pt, pruned_pt, command):
    before = {p: digest(p) for p in (model_pt, pruned_pt)}
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        f.write(b"partial bytes")  # some of it got out before the disk filled up
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    out = tmp_path / "out.pt"
    res = run_cli(*writers(model_pt, pruned_pt, out)[command])
    monkeypatch.setattr(torch, "save", real_save)
    assert_one_line_error(res, 5, "No space left on device", str(out))
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert {p: digest(p) for p in before} == before


@pytest.mark.parametrize("command", ["prune", "reinit"])
def test_interrupted_write_leaves_the_old_output(run_cli, monkeypatch, tmp_path, model_pt, pruned_pt, command):
    out = tmp_path / "out.pt"
    out.write_bytes(b"previous result")

    def interrupted(obj, f, *a, **k):
        f.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    res = run_cli(*writers(model_pt, pruned_pt, out)[command], "--force")
    assert res.exit_code == 130 and "interrupted" in res.stderr
    assert out.read_bytes() == b"previous result"
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]


@pytest.mark.parametrize("command", ["prune", "reinit"])
@pytest.mark.parametrize(
    "where, text",
    [("missing/dir/out.pt", "no such directory"), ("/proc/orthocli-out.pt", "cannot write"), (".", "is a directory")],
)
def test_unwritable_outputs(run_cli, tmp_path, model_pt, pruned_pt, command, where, text):
    out = tmp_path / where if not where.startswith("/") else where
    res = run_cli(*writers(model_pt, pruned_pt, out)[command])
    assert res.exit_code == 5, res.stderr
    assert text in res.stderr or "not writable" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("command", ["score", "prune", "reinit"])
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
    args = {"score": ["score", bad], "prune": ["prune", bad, "-o", tmp_path / "o.pt"], "reinit": ["reinit", bad, "-o", tmp_path / "o.pt"]}
    res = run_cli(*args[command])
    assert_one_line_error(res, code, str(bad))
    assert bad.read_bytes() == content
    assert not (tmp_path / "o.pt").exists()


@pytest.mark.parametrize("command", ["score", "prune"])
def test_nan_weights_and_no_conv_layers(run_cli, tmp_path, command):
    torch.save({"fc.weight": torch.randn(3, 4)}, tmp_path / "linear.pt")
    sd = {"c.weight": torch.randn(4, 2, 3, 3), "d.weight": torch.randn(4, 4, 3, 3)}
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
    for args in (["score"], ["prune", "-o", tmp_path / "o.pt"], ["reinit", "-o", tmp_path / "o.pt"]):
        res = run_cli(args[0], tmp_path / "evil.pt", *args[1:])
        assert_one_line_error(res, 6, "--trust", "run code")
        assert "os.system" in res.stderr or "posix.system" in res.stderr
    assert not marker.exists()
