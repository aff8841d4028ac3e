"""Fuzzing the checkpoint readers (torch's, and `score`'s without torch): mutated real files give a
typed error or a checkpoint, never an unhandled exception (the CLI would print a traceback) and
never run code."""

from __future__ import annotations

import contextlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import orthocli.checkpoints.checkpoint as checkpoint
from orthocli.checkpoints.model import CheckpointModel
from orthocli.errors import OrthoError
from orthocli.scoring.checkpoint_scores import score_checkpoint

SOURCES = ["mtcnn_pnet.pt", "lpips_alex.pth"]  # legacy pickle format, small


DATA = Path(__file__).parents[1] / "data"
ORIGINALS = {name: (DATA / name).read_bytes() for name in SOURCES}


def _zip_state_dict() -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"conv.weight": torch.randn(4, 2, 3, 3), "conv.bias": torch.zeros(4)}, buf)
    return buf.getvalue()


def _safetensors() -> bytes:
    import torch
    from safetensors.torch import save

    return save({"conv.weight": torch.randn(4, 2, 3, 3)})


mutation = st.tuples(
    st.sampled_from(["flip", "truncate", "insert", "zero"]),
    st.floats(0, 1, exclude_max=True),
    st.binary(min_size=1, max_size=8),
)


def mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op, where, blob in ops:
        i = int(where * len(buf)) if buf else 0
        if op == "flip" and buf:
            buf[i] ^= blob[0] or 1
        elif op == "truncate":
            del buf[i:]
        elif op == "insert":
            buf[i:i] = blob
        elif op == "zero" and buf:
            buf[i : i + len(blob)] = bytes(len(blob[: len(buf) - i]))
    return bytes(buf)


def check_reader(path, data):
    path.write_bytes(data)
    try:
        score_checkpoint(path)  # numpy_checkpoint: the reader `score` uses
    except OrthoError as e:
        assert str(e) and "\n" not in str(e)
    try:
        ckpt = checkpoint.load(path)
    except OrthoError as e:
        assert str(e) and "\n" not in str(e)
        return
    with contextlib.suppress(OrthoError):
        CheckpointModel(ckpt).select_convs()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=st.sampled_from(SOURCES), ops=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_legacy_files(tmp_path, source, ops):
    check_reader(tmp_path / "m.pt", mutate(ORIGINALS[source], ops))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["zip", "safetensors"]), ops=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_zip_and_safetensors_files(tmp_path, kind, ops):
    data = _zip_state_dict() if kind == "zip" else _safetensors()
    check_reader(tmp_path / f"m.{kind}", mutate(data, ops))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=256))
def test_random_bytes(tmp_path, data):
    check_reader(tmp_path / "r.bin", data)
