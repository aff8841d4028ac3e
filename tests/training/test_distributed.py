"""Multi-process training under torchrun, on the CPU with the gloo backend: identical weights on
every rank, the same result as one process on the same global batch, only rank 0 writes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_helpers import ONE_CYCLE

HERE = Path(__file__).parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc: int, *args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    for _ in range(3):  # free_port() can race another process for the port; only that is retried
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={nproc}",
            "--master_addr=127.0.0.1",
            f"--master_port={free_port()}",
            *map(str, args),
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=cwd)
        if res.returncode == 0 or "address already in use" not in res.stderr.lower():
            return res
    return res


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same training with 2 processes and with 1 (same global batch)."""
    out = {}
    for n in (2, 1):
        d = tmp_path_factory.mktemp(f"ddp{n}")
        res = torchrun(n, HERE / "ddp_worker.py", d)
        assert res.returncode == 0, res.stderr[-3000:]
        out[n] = [torch.load(d / f"rank{r}.pt", weights_only=True) for r in range(n)]
    return out


def test_every_rank_ends_with_identical_weights_and_drops(runs):
    r0, r1 = runs[2]
    assert r0["world"] == 2
    for k in r0["state_dict"]:
        assert torch.equal(r0["state_dict"][k], r1["state_dict"][k]), k
    assert r0["cycles"] == r1["cycles"]


def test_two_processes_match_one_process_on_the_same_global_batch(runs):
    dist, single = runs[2][0], runs[1][0]
    assert single["world"] == 1
    assert [c["dropped"] for c in dist["cycles"]] == [c["dropped"] for c in single["cycles"]]
    for k, v in single["state_dict"].items():
        assert torch.allclose(dist["state_dict"][k], v, atol=1e-4, rtol=1e-4), (
            k,
            (dist["state_dict"][k] - v).abs().max(),
        )


def test_torchrun_cli_only_rank_zero_writes_and_reports(tmp_path):
    args = [
        "-m",
        "orthocli",
        "train",
        *ONE_CYCLE,
        "--max-samples",
        "200",
        "--width",
        "8",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--json",
        "-o",
        tmp_path / "m.pt",
    ]
    res = torchrun(2, *args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(res.stdout)  # exactly one JSON document: rank 1 printed nothing
    assert doc["runtime"]["world_size"] == 2 and doc["epochs"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]
    saved = torch.load(tmp_path / "m.pt", weights_only=True)
    assert all(t.device.type == "cpu" for t in saved["state_dict"].values())


def test_torchrun_needs_an_output_path(tmp_path):
    res = torchrun(2, "-m", "orthocli", "train", "--cycles", "0", "--max-epochs", "1", cwd=tmp_path)
    assert res.returncode != 0 and "under torchrun give -o/--output" in res.stderr


def test_streamed_folder_shards_across_ranks_and_keeps_them_identical(tmp_path):
    """A streamed image folder under torchrun: each rank reads its own DistributedSampler shard, the
    shards cover the training samples, and both ranks end with the same weights and drops."""
    import numpy as np

    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for c in range(3):
        (tmp_path / "imgs" / f"c{c}").mkdir(parents=True)
        for k in range(12):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"c{c}/{k}.png")
    res = torchrun(2, HERE / "ddp_stream_worker.py", tmp_path / "imgs", tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert r0["world"] == 2 and len(r0["cycles"]) == 1 and r0["cycles"] == r1["cycles"]
    for k in r0["state_dict"]:
        assert torch.equal(r0["state_dict"][k], r1["state_dict"][k]), k
    assert len(r0["read"]) == len(r1["read"]) and set(r0["read"]) | set(r1["read"]) == set(r0["train"])
    assert len(set(r0["read"]) & set(r1["read"])) <= 1  # disjoint, but for the sampler's padding


def test_the_api_in_a_users_ddp_loop_keeps_masks_and_weights_identical_on_both_ranks(tmp_path):
    res = torchrun(2, HERE / "ddp_api_worker.py", tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert r0["masks"] == r1["masks"] and r0["cycles"] == r1["cycles"] and r0["cycles"][0]
    assert [any(not all(m) for m in epoch.values()) for epoch in r0["masks"]] == [False, True, True, False]
    for k in r0["params"]:
        assert torch.equal(r0["params"][k], r1["params"][k]), k
