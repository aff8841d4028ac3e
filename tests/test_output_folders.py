"""One rule for every command that writes: a missing folder an output goes into is created, as
`train`'s default `runs/` is, and said on stderr; a file standing where the folder would be is
refused (exit 5) and nothing is created. Through the real entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLE = Path(__file__).parent.parent / "sample_models" / "mnist1d_convnet.pt"
TINY_TRAIN = ["--cycles", "0", "--max-epochs", "1", "--max-samples", "100", "--threads", "1"]


@pytest.fixture
def pruned(tmp_path, run_cli) -> Path:
    path = tmp_path / "pruned.pt"
    assert run_cli("prune", SAMPLE, "-o", path).exit_code == 0
    return path


def commands(pruned: Path, out: Path) -> dict[str, list]:
    """Each writing command, writing `out`."""
    return {
        "train": ["train", SAMPLE, *TINY_TRAIN, "-o", out],
        "prune": ["prune", SAMPLE, "-o", out],
        "reinit": ["reinit", pruned, "-o", out],
        "export": ["export", SAMPLE, "--format", "pt", "-o", out],
        "score --plot": ["score", SAMPLE, "--plot", out.with_suffix(".png")],
    }


@pytest.mark.parametrize("command", ["train", "prune", "reinit", "export", "score --plot"])
def test_a_missing_folder_is_created_and_said(run_cli, tmp_path, pruned, command):
    out = tmp_path / "runs" / "today" / "out.pt"  # two folders missing
    args = commands(pruned, out)[command]
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr
    written = Path(args[-1])
    assert written.is_file() and written.stat().st_size > 0
    folder = written.parent
    assert f"Created the folder {folder}/ for {written}" in result.stderr.splitlines()
    again = run_cli(*args)  # the folder exists now: nothing to say, and the file is not overwritten
    assert again.exit_code == 5 and "already exists; use --force" in again.stderr
    assert "Created the folder" not in again.stderr


@pytest.mark.parametrize("command", ["train", "prune", "reinit", "export", "score --plot"])
def test_a_file_where_the_folder_would_be_is_refused(run_cli, tmp_path, pruned, command):
    (tmp_path / "runs").write_bytes(b"notes")
    args = commands(pruned, tmp_path / "runs" / "today" / "out.pt")[command]
    result = run_cli(*args)
    assert result.exit_code == 5
    assert result.stderr.strip().splitlines() == [
        f"Error: {tmp_path / 'runs'}: is a file, not a folder; give an output path in a folder"
    ]
    assert (tmp_path / "runs").read_bytes() == b"notes"


def test_train_creates_the_folders_of_metrics_and_plot_too(run_cli, tmp_path):
    out, metrics, plot = tmp_path / "a" / "m.pt", tmp_path / "b" / "m.jsonl", tmp_path / "c" / "m.png"
    result = run_cli("train", SAMPLE, *TINY_TRAIN, "-o", out, "--metrics", metrics, "--plot", plot)
    assert result.exit_code == 0, result.stderr
    assert out.is_file() and metrics.is_file() and plot.is_file()
    for path in (out, metrics, plot):
        assert f"Created the folder {path.parent}/ for {path}" in result.stderr


def test_score_plot_with_several_checkpoints_creates_its_folder(run_cli, tmp_path):
    pictures = tmp_path / "pictures" / "today"
    result = run_cli("score", SAMPLE, SAMPLE.with_suffix(".safetensors"), "--plot", pictures)
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in pictures.iterdir()) == ["mnist1d_convnet-2.png", "mnist1d_convnet.png"]
    assert f"Created the folder {pictures}/ for {pictures}" in result.stderr


def test_a_dry_run_creates_nothing(run_cli, tmp_path):
    result = run_cli("prune", SAMPLE, "--dry-run", "-o", tmp_path / "runs" / "p.pt")
    assert result.exit_code == 0, result.stderr
    assert list(tmp_path.iterdir()) == []
