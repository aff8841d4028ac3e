"""One checkpoint's redundancy report and the gates over it; how many checkpoints' exit codes combine.

Reading goes through numpy_checkpoint.py: no torch for safetensors, torch zip and legacy files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from orthocli.errors import EXIT_GATE_FAILED, EXIT_OK
from orthocli.method.layer_scores import (
    LayerScores,
    above_chance,
    gate_failures,
    most_redundant,
    rule_left_out,
    score_layers,
)

if TYPE_CHECKING:  # stored_report.py is imported only with --against
    from orthocli.scoring.stored_report import Comparison, StoredReport

DEFAULT_TOLERANCE = 0.01  # --tolerance: how much a layer's mean may rise over the --against report


@dataclass(frozen=True)
class ScoreOptions:
    """What `orthocli score` does with each checkpoint: which layers, how it reads the file, the gates."""

    include: list[str] | None = None  # --layers patterns (layer_patterns.py)
    exclude: list[str] | None = None  # --exclude patterns
    key: str | None = None
    trust: bool = False
    top: int = 10
    fail_above: float | None = None  # the absolute gate: a layer's mean above it fails
    against: StoredReport | None = None  # the regression gate: a layer's mean rising over the stored one fails
    tolerance: float = DEFAULT_TOLERANCE


@dataclass
class CheckpointScores:
    path: Path
    format: str  # as checkpoint.load names it: torch-zip, safetensors, ...
    layers: list[LayerScores]
    most_redundant: list[tuple[str, int, float]]  # (layer, filter, score), highest first
    fail_above: float | None  # the gate's bound, None without a gate
    failing: list[LayerScores]  # layers whose mean is above the bound
    comparison: Comparison | None = None  # against the stored report, None without --against
    notes: list[str] = field(default_factory=list)  # what the reader could not know (a guessed layout)
    # (layer, filter, score, score / chance): the filters furthest above their layer's chance level,
    # from the layers the drop rule considers; and the scored layers it leaves alone, with why
    above_chance: list[tuple[str, int, float, float]] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)

    @property
    def rising(self) -> list:
        return self.comparison.rising if self.comparison else []

    @property
    def exit_code(self) -> int:
        return EXIT_GATE_FAILED if self.failing or self.rising else EXIT_OK

    def to_json(self) -> dict:
        scores = [s for r in self.layers for s in r.scores.tolist()]
        return {
            "checkpoint": str(self.path),
            "exit_code": self.exit_code,
            "error": None,
            "format": self.format,
            "layers": [{**r.to_json(), "left_out_by_rule": self.left_out.get(r.layer.name)} for r in self.layers],
            "most_redundant": [{"layer": n, "filter": f, "score": s} for n, f, s in self.most_redundant],
            "most_above_chance": [
                {"layer": n, "filter": f, "score": s, "times_chance": x} for n, f, s, x in self.above_chance
            ],
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
            "against": None if self.comparison is None else self.comparison.to_json(),
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
        "most_above_chance": None,
        "summary": None,
        "gate": None,
        "against": None,
    }


def score_checkpoint(path: str | os.PathLike, options: ScoreOptions | None = None) -> CheckpointScores:
    """Load one checkpoint, score its chosen conv layers, and judge them against the gates. Raises
    the OrthoError that makes the file unusable (unreadable, no conv layers, NaN weights) or the
    options unusable on it (a --layers/--exclude pattern that names none of its layers: exit 2)."""
    import orthocli.checkpoints.numpy_checkpoint as numpy_checkpoint
    from orthocli.errors import CheckpointError, OptionError
    from orthocli.network.layer_patterns import check, listing
    from orthocli.network.layers import select

    o = options or ScoreOptions()
    ckpt = numpy_checkpoint.load(path, key=o.key, trust=o.trust)
    convs = numpy_checkpoint.conv_layers(ckpt, trust=o.trust)
    if not convs.layers:
        raise CheckpointError(
            f"{ckpt.path}: no conv layers found (looked for 3-D to 5-D floating-point tensors named '*weight')"
        )
    names = [c.name for c in convs.layers]
    check(names, o.include, o.exclude, str(ckpt.path))
    chosen = select(convs.layers, o.include, o.exclude)
    if not chosen:
        raise OptionError(f"{ckpt.path}: {{layers}}/{{exclude}} leave no conv layer to score; {listing(names)}")
    results = score_layers(chosen)
    why = rule_left_out(convs.layers)
    left_out = {r.layer.name: why[r.layer.name] for r in results if r.layer.name in why}
    failing = gate_failures(results, o.fail_above) if o.fail_above is not None else []
    comparison = None
    if o.against is not None:
        comparison = o.against.compare(ckpt.path, {r.layer.name: r.mean for r in results}, o.tolerance)
    return CheckpointScores(
        ckpt.path,
        ckpt.format,
        results,
        most_redundant(results, o.top),
        o.fail_above,
        failing,
        comparison,
        convs.notes,
        above_chance(results, o.top, left_out),
        left_out,
    )


def combined_exit_code(codes: Iterable[int]) -> int:
    """The exit code of a run over many checkpoints: the highest of theirs. So a file that could
    not be scored (3 unreadable, 4 unusable, 6 needs --trust, 2 a pattern naming none of its layers
    or a format that needs torch) outranks a gate failure (1), which outranks success (0): a gate
    that could not look at every file has not passed."""
    return max(codes, default=EXIT_OK)
