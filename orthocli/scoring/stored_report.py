"""`orthocli score --against previous.json`: a gate on regressions. The stored report is a
`score --json` document (schema 2); a layer fails when its mean score rose by more than the
tolerance over the mean stored for the same checkpoint and layer.

Checkpoints are matched by their path as the report wrote it (normalised: `./runs/a.pt` is
`runs/a.pt`), so the report is compared with a run of the same command from the same folder. A
checkpoint or a layer the report does not hold (new, renamed, or unreadable then) is not compared:
it passes this gate, and `score` says which ones were left out. `--fail-above`, given too, still
gates every layer on its own.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from orthocli.errors import UsageError


@dataclass(frozen=True)
class Rise:
    """A layer whose mean score rose by more than the tolerance."""

    layer: str
    before: float
    after: float

    @property
    def rise(self) -> float:
        return self.after - self.before


@dataclass(frozen=True)
class Comparison:
    """One checkpoint against the stored report."""

    report: Path
    tolerance: float
    in_report: bool  # False: the report holds no scores for this checkpoint, nothing was compared
    rising: list[Rise]
    new_layers: list[str]  # scored now, not in the report: not compared

    def to_json(self) -> dict:
        return {
            "report": str(self.report),
            "tolerance": self.tolerance,
            "passed": not self.rising,
            "in_report": self.in_report,
            "rising_layers": [
                {"name": r.layer, "before": r.before, "after": r.after, "rise": r.rise} for r in self.rising
            ],
            "new_layers": self.new_layers,
        }


@dataclass(frozen=True)
class StoredReport:
    path: Path
    means: dict[str, dict[str, float]]  # normalised checkpoint path -> layer name -> mean score

    @classmethod
    def read(cls, path: str | os.PathLike) -> StoredReport:
        """The layer means of a stored `score --json` report; a UsageError (exit 2) naming --against
        for a file that is missing or is not such a report."""
        p = Path(path)
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"--against {p}: no such file; give a report that 'orthocli score --json' wrote") from None
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise UsageError(f"--against {p}: not a JSON score report ({str(e)[:80]})") from None
        if not isinstance(doc, dict) or doc.get("schema_version") != 2 or not isinstance(doc.get("checkpoints"), list):
            raise UsageError(f"--against {p}: not a schema-2 report of 'orthocli score --json'")
        means: dict[str, dict[str, float]] = {}
        try:
            for entry in doc["checkpoints"]:
                if entry.get("layers") is None:  # a file that could not be scored then: nothing to compare with
                    continue
                layers = {str(layer["name"]): float(layer["mean"]) for layer in entry["layers"]}
                if not all(math.isfinite(m) for m in layers.values()):
                    raise ValueError("a mean that is not finite")
                means[_normal(entry["checkpoint"])] = layers
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise UsageError(f"--against {p}: a checkpoint entry is malformed ({type(e).__name__}: {e})") from None
        return cls(p, means)

    def compare(self, checkpoint: str | os.PathLike, means: dict[str, float], tolerance: float) -> Comparison:
        """`means` (layer -> mean score now) of `checkpoint` against the stored ones."""
        before = self.means.get(_normal(checkpoint))
        if before is None:
            return Comparison(self.path, tolerance, False, [], list(means))
        rising = [Rise(n, before[n], m) for n, m in means.items() if n in before and m - before[n] > tolerance]
        return Comparison(self.path, tolerance, True, rising, [n for n in means if n not in before])


def _normal(path: str | os.PathLike) -> str:
    return os.path.normpath(str(path))
