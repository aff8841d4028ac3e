"""The drop plan shared by `orthocli prune` and `orthocli train`: which conv layers may lose
filters, their scores, and which filters go. Tensors and layer descriptions in, a plan out."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from orthocli.droprule import DEFAULT_DROP
from orthocli.errors import UsageError
from orthocli.layers import ConvLayer, select
from orthocli.redundancy import LayerScores, score_layers
from orthocli.selection import DropRule, choose_drops


@dataclass
class DropPlan:
    rule: DropRule
    candidates: list[LayerScores]  # scored layers that may lose filters, network order
    excluded: list[str]  # conv layers left alone (globs, the first layer)
    drops: dict[str, torch.Tensor]  # layer name -> dropped filter indices (sorted)

    @property
    def total_filters(self) -> int:
        return sum(c.layer.filters for c in self.candidates)

    @property
    def total_dropped(self) -> int:
        return sum(len(d) for d in self.drops.values())

    def rule_dict(self) -> dict:
        return asdict(self.rule)

    def to_json(self) -> dict:
        layers = []
        for c in self.candidates:
            idx = self.drops.get(c.layer.name, torch.zeros(0, dtype=torch.long))
            layers.append(
                {
                    "name": c.layer.name,
                    "filters": c.layer.filters,
                    "dropped": idx.tolist(),
                    "kept": c.layer.filters - len(idx),
                    "dropped_scores": c.scores[idx].tolist(),
                }
            )
        return {
            "rule": self.rule_dict(),
            "layers": layers,
            "excluded": self.excluded,
            "total": {"filters": self.total_filters, "dropped": self.total_dropped},
        }


def plan_drops(
    layers: list[ConvLayer],
    rule: DropRule,
    *,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    skip_first: bool = DEFAULT_DROP.skip_first,
) -> DropPlan:
    """Score the candidate layers and choose what to drop.

    skip_first: leave the first conv layer alone. Its filters have few dimensions (3x3x3 = 27 for
    RGB), so they always look redundant and global ranking would empty it; the authors excluded it.
    """
    chosen = select(layers, include, exclude)
    if skip_first and layers and chosen and chosen[0].key == layers[0].key:
        chosen = chosen[1:]
    names = {c.key for c in chosen}
    excluded = [layer.name for layer in layers if layer.key not in names]
    if not chosen:
        raise UsageError("no conv layer is left to prune after --layers/--exclude/--skip-first; loosen them")
    scored = score_layers(chosen)
    drops = choose_drops([s.scores for s in scored], rule)
    plan = DropPlan(rule, scored, excluded, {s.layer.name: d for s, d in zip(scored, drops) if len(d)})
    _check_plan(plan)
    return plan


def _check_plan(plan: DropPlan) -> None:
    rule, scores = plan.rule, torch.cat([c.scores for c in plan.candidates])
    if rule.threshold is not None:
        if not (scores > rule.threshold).any():
            raise UsageError(
                f"--threshold {rule.threshold} drops no filter: the highest score is {float(scores.max()):.4f}; lower it"
            )
        if (scores > rule.threshold).all():
            raise UsageError(
                f"--threshold {rule.threshold} would drop every filter: the lowest score is {float(scores.min()):.4f}; raise it"
            )
    if plan.total_dropped == 0:
        raise UsageError(
            f"this rule drops no filter out of {plan.total_filters} (ratio too small, or --min-keep too large); raise --ratio"
        )


def make_rule(ratio: float | None, threshold: float | None, scope: str, min_keep: int) -> DropRule:
    """A DropRule from command-line values; a bad combination is a usage error (exit 2)."""
    if threshold is not None:
        ratio = None
    try:
        return DropRule(ratio=ratio, threshold=threshold, scope=scope, min_keep=min_keep)
    except ValueError as e:
        text = (
            str(e).replace("ratio must", "--ratio must").replace("min_keep", "--min-keep").replace("scope", "--scope")
        )
        raise UsageError(text) from None
