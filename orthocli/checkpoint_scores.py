"""One checkpoint's redundancy report and the gate over it; how many checkpoints' exit codes combine."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from orthocli.errors import EXIT_GATE_FAILED, EXIT_OK
from orthocli.layer_scores import LayerScores, gate_failures, most_redundant, score_layers


@dataclass
class CheckpointScores:
    path: Path
    format: str  # as checkpoint.load names it: torch-zip, safetensors, ...
    layers: list[LayerScores]
    most_redundant: list[tuple[str, int, float]]  # (layer, filter, score), highest first
    fail_above: float | None  # the gate's bound, None without a gate
    failing: list[LayerScores]  # layers whose mean is above the bound

    @property
    def exit_code(self) -> int:
        return EXIT_GATE_FAILED if self.failing else EXIT_OK

    def to_json(self) -> dict:
        scores = [s for r in self.layers for s in r.scores.tolist()]
        return {
            "checkpoint": str(self.path),
            "exit_code": self.exit_code,
            "error": None,
            "format": self.format,
            "layers": [r.to_json() for r in self.layers],
            "most_redundant": [{"layer": n, "filter": f, "score": s} for n, f, s in self.most_redundant],
            "summary": {
                "layers": len(self.layers),
                "filters": len(scores),
                "dead": sum(len(r.dead) for r in self.layers),
                "mean": sum(scores) / len(scores),
                "max": max(scores),
            },
            "gate": None
            if self.fail_above is None
            else {
                "fail_above": self.fail_above,
                "passed": not self.failing,
                "failing_layers": [r.layer.name for r in self.failing],
            },
        }


def unreadable_json(path: Path, exit_code: int, message: str) -> dict:
    """The entry of a checkpoint that could not be scored: the same keys, nothing measured."""
    return {
        "checkpoint": str(path),
        "exit_code": exit_code,
        "error": message,
        "format": None,
        "layers": None,
        "most_redundant": None,
        "summary": None,
        "gate": None,
    }


def score_checkpoint(
    path: str | os.PathLike,
    *,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    key: str | None = None,
    trust: bool = False,
    top: int = 10,
    fail_above: float | None = None,
) -> CheckpointScores:
    """Load one checkpoint, score its chosen conv layers, and judge them against `fail_above`.
    Raises the OrthoError that makes the file unusable (unreadable, no conv layers, NaN weights)."""
    from orthocli import checkpoint as ckpt_io
    from orthocli.checkpoint_model import CheckpointModel

    ckpt = ckpt_io.load(path, key=key, trust=trust)
    results = score_layers(CheckpointModel(ckpt).select_convs(include, exclude))
    failing = gate_failures(results, fail_above) if fail_above is not None else []
    return CheckpointScores(ckpt.path, ckpt.format, results, most_redundant(results, top), fail_above, failing)


def combined_exit_code(codes: Iterable[int]) -> int:
    """The exit code of a run over many checkpoints: the highest of theirs. So a file that could
    not be scored (3 unreadable, 4 unusable, 6 needs --trust) outranks a gate failure (1), which
    outranks success (0): a gate that could not look at every file has not passed."""
    return max(codes, default=EXIT_OK)
