"""`orthocli score --plot` through the real app: one PNG per checkpoint, written atomically, valid
and of the expected size; the matrix behind a picture of a layer with near-copies shows them; bad
paths are one-line errors (exit 5, or 2 without matplotlib) before anything is scored or written."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from train_helpers import near_copies, rewrite_convs

from orthocli.scoring.plot import picture_size

pytest.importorskip("matplotlib")

SAMPLE = Path(__file__).parents[2] / "sample_models" / "mnist1d_convnet.pt"  # 3 conv layers


def png_size(path: Path) -> tuple[int, int]:
    import matplotlib.image

    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    height, width = matplotlib.image.imread(path).shape[:2]
    return width, height


def test_one_checkpoint_one_picture_of_the_expected_size(run_cli, tmp_path):
    out = tmp_path / "m.png"
    res = run_cli("score", SAMPLE, "--plot", out)
    assert res.exit_code == 0, res.stderr
    assert png_size(out) == picture_size(3) == (1000, 960)
    assert f"Picture: {out}" in res.stderr and "features.conv2" in res.stdout  # the table as before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png"]  # no temporary file left


def test_the_picture_of_a_layer_with_near_copies_shows_them(run_cli, tmp_path, monkeypatch):
    import orthocli.scoring.plot

    drawn = {}
    real = orthocli.scoring.plot.plot_layer_pictures
    monkeypatch.setattr(
        orthocli.scoring.plot,
        "plot_layer_pictures",
        lambda path, pics, title: drawn.update(pics=pics) or real(path, pics, title),
    )
    start = rewrite_convs(SAMPLE, tmp_path / "copies.pt", near_copies)  # conv2, conv3: every filter near the first
    res = run_cli("score", start, "--plot", tmp_path / "c.png")
    assert res.exit_code == 0, res.stderr
    by_name = {p.name: p for p in drawn["pics"]}
    assert list(by_name) == ["features.conv1", "features.conv2", "features.conv3"]
    copies = by_name["features.conv2"].cosine
    assert np.nanmin(copies) > 0.9  # all 32 filters one near-copy block
    sample = {p.name: p for p in _pictures_of(SAMPLE)}["features.conv2"].cosine
    assert np.nanmedian(sample) < 0.2  # the trained layer it came from: no block at all


def _pictures_of(path):
    from orthocli.scoring.checkpoint_scores import score_checkpoint
    from orthocli.scoring.filter_similarity import layer_pictures

    return layer_pictures(score_checkpoint(path).layers)


def test_several_checkpoints_one_picture_each_in_a_folder(run_cli, tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        shutil.copy(SAMPLE, tmp_path / sub / "m.pt")
    pics = tmp_path / "pics"
    pics.mkdir()
    res = run_cli("score", tmp_path / "a" / "m.pt", tmp_path / "b" / "m.pt", "--plot", pics, "--json")
    assert res.exit_code == 0, res.stderr
    assert sorted(p.name for p in pics.iterdir()) == ["m-2.png", "m.png"]  # same stem: numbered in order
    assert png_size(pics / "m-2.png") == picture_size(3)
    again = run_cli("score", tmp_path / "a" / "m.pt", "--plot", pics)  # a folder with one checkpoint too
    assert again.exit_code == 5 and "m.png: already exists; use --force" in again.stderr
    assert run_cli("score", tmp_path / "a" / "m.pt", "--plot", pics, "--force").exit_code == 0


@pytest.mark.parametrize(
    "where,several,message",
    [
        (
            "file.png/m.png",
            False,
            "file.png: is a file, not a folder",
        ),  # a missing one is created (test_output_folders.py)
        ("missing.png", True, "missing.png: no such folder; with several checkpoints --plot names a folder"),
        ("file.png", True, "file.png: is a file; with several checkpoints --plot names a folder"),
        ("/proc/m.png", False, "/proc: folder is not writable"),
    ],
)
def test_bad_picture_paths_are_refused_before_any_work(run_cli, tmp_path, where, several, message):
    target = tmp_path / where if not where.startswith("/") else Path(where)
    if where.startswith("file.png"):
        (tmp_path / "file.png").write_bytes(b"mine")
    res = run_cli("score", SAMPLE, *([SAMPLE.with_suffix(".safetensors")] if several else []), "--plot", target)
    assert res.exit_code == 5, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]
    assert res.stdout == ""  # nothing scored
    assert sorted(p.name for p in tmp_path.iterdir()) == (["file.png"] if where.startswith("file.png") else [])


def test_without_matplotlib_one_line_names_the_extra(run_cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    res = run_cli("score", SAMPLE, "--plot", tmp_path / "m.png")
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.strip() == "Error: --plot needs matplotlib: pip install 'orthocli[plot]'"
    assert list(tmp_path.iterdir()) == []


def test_a_picture_that_cannot_be_finished_leaves_nothing(run_cli, tmp_path, monkeypatch):
    import errno
    import os

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)  # the disk fills as the picture is written out
    res = run_cli("score", SAMPLE, "--plot", tmp_path / "m.png")
    assert res.exit_code == 5 and "m.png: cannot write (No space left on device)" in res.stderr
    assert list(tmp_path.iterdir()) == []  # no picture, no temporary file
