"""`orthocli train --config` (TOML) and `--resume`: options from a file, interrupted runs resumed
exactly, damaged state named."""

from __future__ import annotations

import json

import pytest
import torch
from train_helpers import TINY

import orthocli.checkpoints.checkpoint as ckpt_io
from orthocli.training.experiment import Experiment
from orthocli.training.options import DataOptions, HardwareOptions, ModelOptions, OutputOptions

pytestmark = pytest.mark.usefixtures("one_thread")


def test_options_from_toml_and_flags_win(run_cli, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        'cycles = 0\nmax-epochs = 2\noptimizer = "adam"\nexclude = ["features.conv3"]\nwidth = 5\nmax_samples = 100\n'
    )
    result = run_cli("train", "--config", cfg, "--width", "3", "--json", "-o", tmp_path / "m.pt")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    c = doc["config"]
    assert (c["cycles"], c["max_epochs"], c["optimizer"], c["exclude"], c["width"]) == (
        0,
        2,
        "adam",
        ["features.conv3"],
        3,
    )
    assert doc["epochs"] == 2


def test_toml_applies_with_click_installed_next_to_typer(run_cli, tmp_path):
    """Typer >= 0.24 carries its own click; an installed click (the test extra has one, as have most
    environments) once made every option look given on the command line, so the TOML was ignored."""
    import click  # noqa: F401  (importable and imported, as in an environment with huggingface_hub or flask)

    cfg = tmp_path / "run.toml"
    cfg.write_text(
        'cycles = 0\nmax_epochs = 1\nbatch_size = 16\nseed = 3\nwidth = 5\nmax_samples = 60\nschedule = "step"\n'
    )
    result = run_cli("train", "--config", cfg, "--seed", "4", "--json", "-o", tmp_path / "m.pt")
    assert result.exit_code == 0, result.stderr
    c = json.loads(result.stdout)["config"]
    assert (c["cycles"], c["max_epochs"], c["batch_size"], c["width"], c["max_samples"]) == (0, 1, 16, 5, 60)
    assert c["schedule"] == "step" and json.loads(result.stdout)["epochs"] == 1
    assert c["seed"] == 4  # the flag wins


@pytest.mark.parametrize("text", ["cylces = 2\n", 'optimizer = "rmsprop"\n', "s1 = [\n"])
def test_bad_toml_is_a_usage_error(run_cli, tmp_path, text):
    cfg = tmp_path / "run.toml"
    cfg.write_text(text)
    result = run_cli("train", *TINY, "-o", tmp_path / "m.pt", "--config", cfg)
    assert result.exit_code == 2 and result.stderr.startswith("Error: --config")
    assert not (tmp_path / "m.pt").exists()


def test_resume_after_interrupt_matches_an_uninterrupted_run(run_cli, tmp_path, monkeypatch):
    args = [*TINY, "--s2", "2", "--cycles", "2", "--max-epochs", "8", "--deterministic", "--baseline", "--metrics"]
    full = run_cli("train", *args, tmp_path / "full.jsonl", "-o", tmp_path / "full.pt", "--json")
    assert full.exit_code == 0, full.stderr

    real = Experiment.on_event

    def interrupt(self, role, event, arch):
        real(self, role, event, arch)
        if role == "baseline" and event["kind"] == "epoch" and event["epoch"] == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(Experiment, "on_event", interrupt)
    out = tmp_path / "run.pt"
    first = run_cli("train", *args, tmp_path / "run.jsonl", "-o", out, "--state-every", "0")
    assert first.exit_code == 130 and f"orthocli train -o {out} --resume" in first.stderr
    assert (tmp_path / "run.pt.state").exists() and (tmp_path / "run.baseline.pt.state").exists()
    assert not (tmp_path / "run.baseline.pt").exists()

    monkeypatch.setattr(Experiment, "on_event", real)
    again = run_cli("train", "-o", out, "--resume", "--json")
    assert again.exit_code == 0, again.stderr
    for name in ("", ".baseline"):
        a, b = ckpt_io.load(tmp_path / f"full{name}.pt"), ckpt_io.load(tmp_path / f"run{name}.pt")
        assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)

    def strip(text):
        return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in text.splitlines()]

    assert strip((tmp_path / "run.jsonl").read_text()) == strip((tmp_path / "full.jsonl").read_text())
    assert not list(tmp_path.glob("*.state"))


def test_resume_without_state(run_cli, tmp_path):
    result = run_cli("train", "-o", tmp_path / "m.pt", "--resume")
    assert result.exit_code == 2 and "no saved training state" in result.stderr


def test_run_meta_round_trips_and_a_damaged_one_is_named(tmp_path):
    from pathlib import Path

    from orthocli.errors import CheckpointError
    from orthocli.training.options import RunMeta

    meta = RunMeta(
        model=ModelOptions(checkpoint=Path("a.pt"), arch="convnet", width=4, batchnorm=True, activation="tanh"),
        data=DataOptions(data=Path("d.npz"), max_samples=50),
        outputs=OutputOptions(output=Path("m.pt"), baseline=True, metrics=Path("m.jsonl")),
        hardware=HardwareOptions(device="cpu", threads=2),
        role="baseline",
    )
    doc = meta.to_dict()
    assert json.loads(json.dumps(doc)) == doc  # plain values only
    assert RunMeta.from_dict(doc, tmp_path / "s") == meta
    with pytest.raises(CheckpointError, match="s.state: the saved options are damaged.*arch_options"):
        RunMeta.from_dict({k: v for k, v in doc.items() if k != "arch_options"}, tmp_path / "s.state")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.update(state_version=99), "a training state of version 99"),
        (lambda p: p["meta"].pop("output"), "the saved options are damaged"),
        (lambda p: p["train"].pop("best"), "a damaged training state file"),
    ],
)
def test_resume_from_a_damaged_state_file(run_cli, tmp_path, monkeypatch, damage, message):
    real = Experiment.on_event

    def interrupt(self, role, event, arch):
        real(self, role, event, arch)
        if event["kind"] == "epoch" and event["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(Experiment, "on_event", interrupt)
    out = tmp_path / "m.pt"
    assert run_cli("train", *TINY, "-o", out, "--state-every", "0").exit_code == 130
    state = tmp_path / "m.pt.state"
    payload = torch.load(state, weights_only=True)
    damage(payload)
    torch.save(payload, state)
    monkeypatch.setattr(Experiment, "on_event", real)
    result = run_cli("train", "-o", out, "--resume")
    assert result.exit_code == 4 and message in result.stderr, result.stderr
    assert not out.exists()
